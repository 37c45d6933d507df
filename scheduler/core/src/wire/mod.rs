//! The decoders of outside input: what kube-scheduler, the API server and the user hand the
//! scheduler as bytes, turned into typed values with errors that name the field. Pure: the shell
//! reads the sockets and files and calls these; the fuzz targets (`fuzz/`) call them directly.
//!
//! | module | decodes |
//! |---|---|
//! | [`extender`] | the kube-scheduler extender v1 bodies (`ExtenderArgs`, `ExtenderBindingArgs`), keys folded like Go |
//! | [`admission_review`] | AdmissionReview v1 and v1beta1 around [`crate::admission::mutate`] and [`crate::admission::review_update`] |
//! | [`manifest`] | Kubernetes objects as `kubectl get -o yaml` prints them, and workloads into their pods |

pub mod admission_review;
pub mod extender;
pub mod manifest;
