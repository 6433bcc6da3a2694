//! The runtime: the only code that knows io_uring, epoll, threads, cores, sockets and timers.
//!
//! [`run`] starts one worker thread per core, pins it, gives it its own runtime (one io_uring,
//! or one epoll current-thread tokio runtime) and its own SO_REUSEPORT listener, and hands each
//! accepted connection to that core's [`Service`] as a [`Conn`]. Nothing here is shared between
//! cores except the shutdown flag and the listeners' duplicated descriptors held by the main
//! thread; per-core state is `Rc`/`Cell` and never leaves its thread.
//!
//! All `unsafe` in ringchat lives under this module.

mod affinity;
mod client;
mod conn;
mod core;
mod doorbell;
mod limits;
mod listener;
mod mesh;
mod workers;

pub use self::affinity::available_cpus;
pub use self::client::{connect, run_local};
pub use self::conn::{Conn, SWEEP_INTERVAL_MS};
pub use self::core::{Backend, CoreInfo, RtOptions, Service, choose_backend, run};
pub use self::limits::raise_open_files_limit;
pub use self::listener::LISTEN_BACKLOG_CONNECTIONS;
pub use self::mesh::{
    Full, MESH_CORES_MAX, MESH_RING_CAPACITY_DEFAULT, MESH_RING_CAPACITY_MAX, MeshEndpoint, mesh,
};
pub use self::workers::{Busy, WORKER_QUEUE_JOBS_MAX, WORKER_THREADS_MAX, WorkerGone, Workers};

/// Spawns a task on the current core. Tasks never migrate between cores.
pub fn spawn<F>(task: F)
where
    F: std::future::Future<Output = ()> + 'static,
{
    tokio::task::spawn_local(task);
}
