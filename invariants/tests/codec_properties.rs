//! Tier 1 property tests of every wire format: `parse(render(x)) == x` over generated values
//! (including values a renderer must refuse), and `parse` never panics on valid, damaged or
//! arbitrary strings, with whatever parses rendering back to itself.

use proptest::prelude::*;
use sliceguard_invariants::codecs::strategies::{
    adversarial_annotation, devices_any, devices_int32, handshake_value, lock_value, pod_devices,
    reason_list, valid_annotation,
};
use sliceguard_invariants::codecs::{self, check_annotation};
use sliceguard_invariants::{ensure, proptest_config, regression_file};

fn holds(
    result: Result<(), sliceguard_invariants::violation::Violation>,
) -> Result<(), TestCaseError> {
    ensure(&result.err().into_iter().collect::<Vec<_>>())
}

proptest! {
    #![proptest_config(proptest_config(1500, regression_file!("codec_register")))]

    /// Register JSON round-trips every device list with `int32` numbers; the text form round-trips
    /// whatever it renders and refuses exactly what it cannot carry.
    #[test]
    fn register_round_trips(json in devices_int32(), text in devices_any()) {
        holds(codecs::roundtrip_register_json(&json))?;
        holds(codecs::roundtrip_register_text(&json))?;
        holds(codecs::roundtrip_register_text(&text))?;
    }
}

proptest! {
    #![proptest_config(proptest_config(1500, regression_file!("codec_pod_devices")))]

    /// Pod devices round-trip whatever renders; the renderer refuses exactly what the format
    /// cannot carry (separators in names, numbers beyond `int32`).
    #[test]
    fn pod_devices_round_trip(devices in pod_devices()) {
        holds(codecs::roundtrip_pod_devices(&devices))?;
    }
}

proptest! {
    #![proptest_config(proptest_config(1500, regression_file!("codec_lock")))]

    /// Lock values round-trip (instant, written offset, holder); a holder with a comma is refused.
    #[test]
    fn lock_round_trips(lock in lock_value()) {
        holds(codecs::roundtrip_lock(&lock))?;
    }
}

proptest! {
    #![proptest_config(proptest_config(1500, regression_file!("codec_handshake_reasons")))]

    /// Handshakes and reason lists round-trip.
    #[test]
    fn handshake_and_reasons_round_trip(handshake in handshake_value(), reasons in reason_list()) {
        holds(codecs::roundtrip_handshake(&handshake))?;
        prop_assert!(codecs::reasons_representable(&reasons), "generator made {:?}", reasons);
        holds(codecs::roundtrip_reasons(&reasons))?;
    }
}

proptest! {
    #![proptest_config(proptest_config(3000, regression_file!("codec_parse_any_string")))]

    /// Every parser returns on valid, damaged and arbitrary strings, and what it accepts renders
    /// back to a string that parses to the same value.
    #[test]
    fn parsers_never_panic_and_what_parses_round_trips(input in adversarial_annotation()) {
        ensure(&check_annotation(&input))?;
    }

    /// Valid values of every codec pass the same checks (a baseline for the damaged ones).
    #[test]
    fn valid_annotations_pass_every_check(input in valid_annotation()) {
        ensure(&check_annotation(&input))?;
    }
}
