//! The shim as Kubernetes drives it: containerd 1.6 with its CRI plugin (own config, socket,
//! root and state in a temp dir; the shim's directory on its PATH; runtime handler `spore` →
//! `io.containerd.spore.v1`), and a CRI client doing what a kubelet does for a pod whose
//! RuntimeClass names `spore`: pull the images from a real registry, run the pod sandbox,
//! create and start the container with the pod's resources, wait for it, read its log file.

use crate::support::cri::{Container, CriClient};
use crate::support::peers::{Containerd, Cri, Registry};
use crate::support::{Image, guest, pause_image, shim_dir};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_with_runtime_class_spore_run_spore_images() {
    let work = tempfile::tempdir().unwrap();
    let reg = Registry::start(None);
    let push = |image: Image| image.push(&reg, work.path());
    let pause = push(pause_image());
    let hello = push(Image::wasm("hello", "/hello.wasm", guest("hello"), &["/hello.wasm"]));
    // Named as Docker names wasm (`spore build --platform wasi/wasm`): config `os: wasi`.
    let docker_named =
        push(Image { os: "wasi", ..Image::wasm("docker-named", "/hello.wasm", guest("hello"), &["/hello.wasm"]) });
    let args = push(Image::wasm("args", "/args.wasm", guest("args-env"), &["/args.wasm"]));
    let exit = push(Image::wasm("exit", "/exit.wasm", guest("exit-code"), &["/exit.wasm"]));
    let spin = push(Image::wasm("spin", "/spin.wasm", guest("spin"), &["/spin.wasm"]));
    let membomb = push(Image::wasm("membomb", "/membomb.wasm", guest("membomb"), &["/membomb.wasm"]));
    // A module that needs 64 MiB before it runs at all.
    let big = wat::parse_str(r#"(module (memory (export "memory") 1024) (func (export "_start")))"#).unwrap();
    let big = push(Image::wasm("big", "/big.wasm", big, &["/big.wasm"]));

    let bin = shim_dir(work.path(), env!("CARGO_BIN_EXE_containerd-shim-spore-v1").as_ref());
    let cri = Cri { sandbox_image: &pause, registry: &reg.addr, runtimes: &[("spore", "io.containerd.spore.v1")] };
    let ctd = Containerd::start_cri(&bin, &cri);
    let mut client = CriClient::connect(&ctd.socket(), &work.path().join("pods"))
        .await
        .unwrap_or_else(|e| panic!("the CRI does not answer: {e}\n{}", ctd.log()));
    for image in [&pause, &hello, &docker_named, &args, &exit, &spin, &membomb, &big] {
        client.pull(image).await;
    }

    // Output reaches the CRI log file; the exit code is the container's.
    let pod = client.run_pod("hello", "spore").await.unwrap_or_else(|e| panic!("{e}\n{}", ctd.log()));
    let id = client
        .start(&pod, &Container { name: "hello", image: &hello, ..Default::default() })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ctd.log()));
    let done = client.wait(&pod, &id, WAIT).await;
    assert_eq!((done.exit_code, done.log.as_str()), (0, "Hello from Spore!"), "{done:?}");
    let id = client.start(&pod, &Container { name: "docker-named", image: &docker_named, ..Default::default() }).await;
    let done = client.wait(&pod, &id.unwrap_or_else(|e| panic!("{e}\n{}", ctd.log())), WAIT).await;
    assert_eq!((done.exit_code, done.log.as_str()), (0, "Hello from Spore!"), "under wasi/wasm: {done:?}");

    // The pod's args follow the image's Entrypoint, env reaches the guest.
    let id = client
        .start(
            &pod,
            &Container {
                name: "args",
                image: &args,
                args: &["one", "two words"],
                env: &[("GREETING", "hi there")],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let done = client.wait(&pod, &id, WAIT).await;
    assert_eq!(done.exit_code, 0, "{done:?}");
    assert!(done.log.contains("arg[1]=one") && done.log.contains("arg[2]=two words"), "{done:?}");
    assert!(done.log.contains("env GREETING=hi there"), "{done:?}");
    let id = client
        .start(&pod, &Container { name: "exit", image: &exit, args: &["7"], ..Default::default() })
        .await
        .unwrap();
    let done = client.wait(&pod, &id, WAIT).await;
    assert_eq!(done.exit_code, 7, "{done:?}");

    // A looping guest is stopped by SIGTERM at once, not after the grace period.
    let id = client.start(&pod, &Container { name: "spin", image: &spin, ..Default::default() }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let asked = Instant::now();
    client.stop(&id, Duration::from_secs(30)).await;
    let done = client.wait(&pod, &id, WAIT).await;
    assert!(asked.elapsed() < Duration::from_secs(10), "stopped after {:?}", asked.elapsed());
    assert_eq!(done.exit_code, 143, "ended by SIGTERM: {done:?}");
    client.remove_pod(&pod).await;

    // The pod's memory limit is the guest's: it is stopped there, with Spore's message in the log.
    let pod = client.run_pod("membomb", "spore").await.unwrap();
    let id = client
        .start(&pod, &Container { name: "membomb", image: &membomb, memory: Some(64 << 20), ..Default::default() })
        .await
        .unwrap();
    let done = client.wait(&pod, &id, WAIT).await;
    assert_eq!(done.exit_code, 137, "{done:?}");
    assert!(done.log.contains("memory limit of") && done.log.contains("reached"), "{done:?}");
    assert!(done.log.contains("allocated 16 MiB"), "the guest ran until refused: {done:?}");

    // A limit below the module's declared minimum: a clear error at once, not a hang or an OOM.
    let id = client
        .start(&pod, &Container { name: "big", image: &big, memory: Some(32 << 20), ..Default::default() })
        .await
        .unwrap();
    let done = client.wait(&pod, &id, WAIT).await;
    assert_eq!(done.exit_code, 125, "{done:?}");
    assert!(done.log.contains("/big.wasm declares a minimum memory of 64 MiB"), "{done:?}");
    assert!(done.log.contains("container's memory limit of 32 MiB"), "{done:?}");
    client.remove_pod(&pod).await;
}
