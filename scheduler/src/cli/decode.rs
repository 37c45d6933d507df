//! `sliceguard decode`: one annotation value parsed and printed as JSON.

use super::{Failure, print};
use crate::codec::{handshake, lock, pod_devices, reasons, register};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};

/// Parse one annotation value and print it as JSON (exit 2 with the error otherwise).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sliceguard decode node-register '[{\"id\":\"GPU-0\",\"count\":10,\"devmem\":15360,\"devcore\":100,\"type\":\"NVIDIA-Tesla T4\",\"health\":true}]'\n  sliceguard decode pod-devices 'GPU-0,NVIDIA,3000,30:;'\n  sliceguard decode lock '2025-10-20T03:07:02Z,default,mypod'\n  sliceguard decode reasons '1/2 CardInsufficientMemory, 1/2 NumaNotFit'\n  kubectl get node n1 -o jsonpath='{.metadata.annotations.hami\\.io/node-nvidia-register}' | sliceguard decode node-register -"
)]
pub struct DecodeArgs {
    /// Which format VALUE is in.
    #[arg(value_enum)]
    format: Which,
    /// The annotation value; `-` reads it from standard input.
    value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    /// hami.io/node-nvidia-register (JSON or legacy text).
    NodeRegister,
    /// hami.io/vgpu-devices-allocated / -to-allocate.
    PodDevices,
    /// hami.io/mutex.lock.
    Lock,
    /// A reason list such as `1/2 CardInsufficientMemory, 1/2 NumaNotFit`.
    Reasons,
    /// hami.io/node-handshake.
    Handshake,
}

pub fn run(args: &DecodeArgs) -> Result<(), Failure> {
    let value = if args.value == "-" {
        let text = super::input::read_text(std::path::Path::new("-"))?;
        text.strip_suffix('\n')
            .map(|t| t.strip_suffix('\r').unwrap_or(t))
            .unwrap_or(&text)
            .to_string()
    } else {
        args.value.clone()
    };
    let decoded = decode(args.format, &value).map_err(Failure::input)?;
    print(&(serde_json::to_string_pretty(&decoded).unwrap_or_default() + "\n"))
}

fn decode(which: Which, value: &str) -> Result<Value, String> {
    Ok(match which {
        Which::NodeRegister => json!(register::parse(value).map_err(|e| e.to_string())?),
        Which::PodDevices => json!(pod_devices::parse(value).map_err(|e| e.to_string())?.0),
        Which::Lock => {
            let l = lock::parse(value).map_err(|e| e.to_string())?;
            json!({
                "taken_at": l.taken_at.to_string(),
                "written_as": lock::render_rfc3339(l.taken_at, l.offset_minutes),
                "legacy": l.holder.is_none(),
                "holder": l.holder,
            })
        }
        Which::Reasons => json!(reasons::parse(value).map_err(|e| e.to_string())?.0),
        Which::Handshake => match handshake::parse(value).map_err(|e| e.to_string())? {
            handshake::Handshake::Requesting(t) => {
                json!({"state": "Requesting", "time": t.to_string()})
            }
            handshake::Handshake::Deleted(t) => json!({"state": "Deleted", "time": t.to_string()}),
            handshake::Handshake::Reported(s) => json!({"state": "Reported", "detail": s}),
        },
    })
}
