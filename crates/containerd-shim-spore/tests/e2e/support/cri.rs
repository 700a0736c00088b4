//! A small CRI client, driving containerd as a kubelet would: pull, run a pod sandbox with a
//! runtime handler, create and start a container in it, wait for it, read its log.

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint, Uri};

pub struct CriClient {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    /// Where pods' logs go (`<logs>/<pod>/<container>.log`).
    logs: PathBuf,
}

/// One pod as a kubelet makes it: host network (no CNI here), the given runtime handler.
pub struct Pod {
    pub id: String,
    pub config: PodSandboxConfig,
}

/// A pod's container, as its spec gives it.
#[derive(Default)]
pub struct Container<'a> {
    pub name: &'a str,
    pub image: &'a str,
    /// Replaces the image's Entrypoint when not empty.
    pub command: &'a [&'a str],
    /// Replaces the image's Cmd.
    pub args: &'a [&'a str],
    pub env: &'a [(&'a str, &'a str)],
    /// `resources.limits.memory`, bytes.
    pub memory: Option<i64>,
}

/// A container as it ended.
#[derive(Debug)]
pub struct Exited {
    pub exit_code: i32,
    pub reason: String,
    /// The log file's lines, the CRI prefix (time, stream, tag) removed.
    pub log: String,
}

/// A kubelet's defaults for a host-network pod: the node's network, a PID namespace per
/// container (`shareProcessNamespace: false`), the pod's IPC.
fn host_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

impl CriClient {
    /// Connects to the CRI on containerd's socket; logs under `logs`.
    pub async fn connect(socket: &Path, logs: &Path) -> Result<CriClient, tonic::Status> {
        let socket = socket.to_owned();
        let channel = Endpoint::try_from("http://[::]:0")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let socket = socket.clone();
                async move { Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
            }))
            .await
            .expect("cannot connect to containerd's CRI socket");
        let mut c = CriClient {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            logs: logs.to_owned(),
        };
        c.runtime.version(VersionRequest { version: "v1".into() }).await?;
        Ok(c)
    }

    /// Pulls an image through the CRI (the registry config of containerd's CRI plugin applies).
    pub async fn pull(&mut self, image: &str) -> String {
        let req = PullImageRequest {
            image: Some(ImageSpec { image: image.into(), ..Default::default() }),
            ..Default::default()
        };
        self.images.pull_image(req).await.unwrap_or_else(|e| panic!("pull {image}: {e}")).into_inner().image_ref
    }

    /// Runs a pod sandbox named `name` with runtime handler `handler` (no hostname: a host-network
    /// pod shares the node's, as kubelet does it).
    pub async fn run_pod(&mut self, name: &str, handler: &str) -> Result<Pod, tonic::Status> {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: self.logs.join(name).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(host_namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let req = RunPodSandboxRequest { config: Some(config.clone()), runtime_handler: handler.into() };
        let id = self.runtime.run_pod_sandbox(req).await?.into_inner().pod_sandbox_id;
        Ok(Pod { id, config })
    }

    /// Creates and starts `container` in `pod`; its id.
    pub async fn start(&mut self, pod: &Pod, c: &Container<'_>) -> Result<String, tonic::Status> {
        let strings = |v: &[&str]| v.iter().map(|a| a.to_string()).collect();
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata { name: c.name.into(), attempt: 0 }),
            image: Some(ImageSpec { image: c.image.into(), ..Default::default() }),
            command: strings(c.command),
            args: strings(c.args),
            envs: c.env.iter().map(|(k, v)| KeyValue { key: k.to_string(), value: v.to_string() }).collect(),
            log_path: format!("{}.log", c.name),
            linux: Some(LinuxContainerConfig {
                resources: c.memory.map(|m| LinuxContainerResources { memory_limit_in_bytes: m, ..Default::default() }),
                security_context: Some(LinuxContainerSecurityContext {
                    namespace_options: Some(host_namespaces()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let req = CreateContainerRequest {
            pod_sandbox_id: pod.id.clone(),
            config: Some(config),
            sandbox_config: Some(pod.config.clone()),
        };
        let id = self.runtime.create_container(req).await?.into_inner().container_id;
        self.runtime.start_container(StartContainerRequest { container_id: id.clone() }).await?;
        Ok(id)
    }

    /// Waits (up to `timeout`) for the container to exit; its status and log.
    pub async fn wait(&mut self, pod: &Pod, id: &str, timeout: Duration) -> Exited {
        let start = Instant::now();
        loop {
            let status = self
                .runtime
                .container_status(ContainerStatusRequest { container_id: id.into(), verbose: false })
                .await
                .expect("container status")
                .into_inner()
                .status
                .expect("a status");
            if status.state == ContainerState::ContainerExited as i32 {
                let file = Path::new(&pod.config.log_directory).join(&status.log_path);
                return Exited { exit_code: status.exit_code, reason: status.reason, log: read_log(&file) };
            }
            assert!(start.elapsed() < timeout, "{id} still {:?} after {timeout:?}", status.state);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops a container as a kubelet does: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, id: &str, grace: Duration) {
        let req = StopContainerRequest { container_id: id.into(), timeout: grace.as_secs() as i64 };
        self.runtime.stop_container(req).await.expect("stop container");
    }

    /// Stops and removes the pod and its containers, as a kubelet deleting it.
    pub async fn remove_pod(&mut self, pod: &Pod) {
        self.runtime
            .stop_pod_sandbox(StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() })
            .await
            .expect("stop pod");
        self.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() })
            .await
            .expect("remove pod");
    }
}

/// The CRI log format: `<RFC3339 time> <stdout|stderr> <F|P> <text>` per line; the text kept.
fn read_log(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    text.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("")).collect::<Vec<_>>().join("\n")
}
