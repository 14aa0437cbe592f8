//! A scaled-out cluster on this machine, as child processes: private PostgreSQL and NATS
//! servers that can be killed and restarted ([`servers`]), `tare serve` nodes and the
//! `tare sandbox` they share ([`nodes`]), drained child processes and free ports
//! ([`processes`]). `tare soak` and the scaled-out end-to-end tests are built from these.

pub mod nodes;
pub mod processes;
pub mod servers;

pub use nodes::{delete_namespace, fresh_namespace, metric, metrics, sandbox, ClusterSpec, Node, SANDBOX_SECRET};
pub use processes::{free_port, wait_port, Proc};
pub use servers::{PgStop, PrivateNats, PrivatePostgres};
