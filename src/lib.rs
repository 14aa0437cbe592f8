//! The `tare` binary's library: wiring the embedded platform with its sandboxes and HTTP
//! API ([`app`]), the virtual fleet and the shoppers that drive it ([`fleet`]), and the
//! benchmarks ([`bench`]), the in-process device transport ([`in_process`]), `tare replay` ([`replay`]), and `tare backup` / `tare restore` ([`backup`]). The end-to-end tests in `tests/` use the same pieces.

pub mod app;
pub mod backup;
pub mod bench;
pub mod bench_callbacks;
pub mod bench_gateway;
pub mod bench_providers;
pub mod bench_purchase;
pub mod bench_replay;
pub mod bench_store;
pub mod fleet;
pub mod in_process;
pub mod local_cluster;
pub mod provider_faults;
pub mod reconcile;
pub mod replay;
pub mod soak;
pub mod tail_cli;
/// One readable line per saga step (lives with the API's SSE tail).
pub use tare_gateway::tail;
