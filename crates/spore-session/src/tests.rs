//! The session's rules against a runner that only records what it was asked.

use super::*;

use spore_wire::{Commit, InstanceInfo, InstanceState, Limits, ModuleKind, Ping};

#[derive(Default)]
struct Recorder {
    instantiated: u32,
    released: Vec<Digest>,
    unwatched: u32,
    runs: Vec<(u32, u32)>,
    /// Instances STATS reports (to make an answer too large).
    instances: u32,
    /// Their state, if not just made.
    state: Option<InstanceState>,
}

impl Runner for Recorder {
    type Upload = u64;

    fn describe(&self) -> Description {
        Description {
            runner: "test".to_string(),
            backends: Vec::new(),
            limits: RunnerLimits { max_module_bytes: 1 << 20, memory_bytes: 1 << 20, max_instances: 4 },
            interfaces: Vec::new(),
            devices: vec![Device { name: "gpio".into(), interface: "spore:device/gpio@0.1".into() }],
            max_payload: 8192,
        }
    }
    fn token_matches(&self, token: &str) -> bool {
        token == "s3cret"
    }
    fn begin(&mut self, _: &ModuleBegin) -> Result<(Message, Option<u64>), Refusal> {
        Ok((Message::Done(()), Some(3)))
    }
    fn received(&self, upload: &u64) -> u64 {
        *upload
    }
    fn chunk(&mut self, upload: &mut u64, chunk: &Chunk) -> Result<ChunkAck, Refusal> {
        *upload += chunk.bytes.len() as u64;
        Ok(ChunkAck { digest: chunk.digest, received: *upload })
    }
    fn complete(&mut self, _: &u64) -> Result<(), Refusal> {
        Ok(())
    }
    fn commit(&mut self, _: u64, _: Digest) -> Result<(), Refusal> {
        Ok(())
    }
    fn release(&mut self, digest: &Digest, _: u64) {
        self.released.push(*digest);
    }
    fn instantiate(&mut self, _: Instantiate) -> Result<u32, Refusal> {
        self.instantiated += 1;
        Ok(self.instantiated)
    }
    fn run(&mut self, request: u32, instance: u32, _: Entry, _: u32) -> Result<(), Refusal> {
        self.runs.push((request, instance));
        Ok(())
    }
    fn credit(&mut self, _: u32, _: u32) {}
    fn kill(&mut self, _: u32) -> Result<(), Refusal> {
        Ok(())
    }
    fn drop_instance(&mut self, _: u32) -> Result<(), Refusal> {
        Ok(())
    }
    fn drop_module(&mut self, _: &Digest) -> Result<(), Refusal> {
        Ok(())
    }
    fn kept(&self, _: u32, _: u32) -> Result<Vec<(StreamKind, Vec<u8>)>, Refusal> {
        Ok(vec![(StreamKind::Stdout, vec![b'x'; 20_000])])
    }
    fn stats(&self) -> Stats {
        let info = InstanceInfo {
            id: 1,
            name: "x".repeat(64),
            module: [0; 32],
            state: self.state.clone().unwrap_or(InstanceState::Created),
            memory_bytes: 0,
            cpu_us: 0,
            boot: false,
        };
        Stats { uptime_ms: 0, memory_bytes: 0, modules: 0, instances: vec![info; self.instances as usize] }
    }
    fn unwatch(&mut self) {
        self.unwatched += 1;
    }
}

fn hello(token: &str, max_payload: u32) -> Message {
    Message::Hello(Hello {
        min_version: VERSION,
        max_version: VERSION,
        max_payload,
        agent: "t".into(),
        token: token.into(),
    })
}

fn ask(session: &mut Session<Recorder>, id: u32, flags: u16, m: &Message) -> Vec<(u32, Message)> {
    session.frame(Ok(&spore_wire::encode(id, flags, m)))
}

fn code(answers: &[(u32, Message)]) -> Option<ErrorCode> {
    match answers {
        [(_, Message::Error(e))] => Some(e.code),
        _ => None,
    }
}

fn spec() -> Message {
    Message::Instantiate(Instantiate {
        module: [1; 32],
        name: "a".into(),
        args: Vec::new(),
        env: Vec::new(),
        limits: Limits::default(),
        boot: false,
        devices: Vec::new(),
    })
}

#[test]
fn hello_comes_first_and_agrees_the_smaller_payload() {
    let mut s = Session::new(Recorder::default(), false);
    assert_eq!(code(&ask(&mut s, 1, 0, &Message::Ping(Ping { nonce: 1 }))), Some(ErrorCode::UNAUTHORIZED));
    let answers = ask(&mut s, 2, 0, &hello("", 1 << 20));
    let [(2, Message::HelloAck(ack))] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!((ack.max_payload, s.max_payload()), (8192, Some(8192)));
    assert_eq!(ask(&mut s, 3, 0, &Message::Ping(Ping { nonce: 7 })), vec![(3, Message::Pong(Pong { nonce: 7 }))]);
    // Never below the protocol's minimum, whatever the agent asks.
    ask(&mut s, 4, 0, &hello("", 1));
    assert_eq!(s.max_payload(), Some(spore_wire::frame::MIN_MAX_PAYLOAD));
}

#[test]
fn a_link_that_needs_the_token_is_refused_without_it_and_another_version_is_named() {
    let mut s = Session::new(Recorder::default(), true);
    assert_eq!(code(&ask(&mut s, 1, 0, &hello("wrong", 4096))), Some(ErrorCode::UNAUTHORIZED));
    assert_eq!(s.max_payload(), None);
    assert!(matches!(ask(&mut s, 2, 0, &hello("s3cret", 4096)).as_slice(), [(2, Message::HelloAck(_))]));

    let mut s = Session::new(Recorder::default(), false);
    let old = Message::Hello(Hello {
        min_version: 0,
        max_version: 0,
        max_payload: 4096,
        agent: "t".into(),
        token: String::new(),
    });
    let answers = ask(&mut s, 1, 0, &old);
    let [(1, Message::Error(e))] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!(e.code, ErrorCode::VERSION);
    assert!(e.message.contains(&format!("version {VERSION}")), "{}", e.message);
}

#[test]
fn a_retransmitted_request_is_answered_again_and_not_done_twice() {
    let mut s = Session::new(Recorder::default(), false);
    ask(&mut s, 1, 0, &hello("", 4096));
    let first = ask(&mut s, 2, 0, &spec());
    assert_eq!(first, vec![(2, Message::Instance(spore_wire::Instance { id: 1 }))]);
    assert_eq!(ask(&mut s, 2, FLAG_RETRANSMIT, &spec()), first);
    assert_eq!(s.runner.instantiated, 1);
    // A new request id is a new request, retransmission flag or not.
    ask(&mut s, 3, FLAG_RETRANSMIT, &spec());
    assert_eq!(s.runner.instantiated, 2);
    // A RUN's ACCEPTED is the runner's to send, and kept for a retransmission.
    assert_eq!(ask(&mut s, 4, 0, &Message::Run(spore_wire::Run { instance: 1 })), Vec::new());
    let again = ask(&mut s, 4, FLAG_RETRANSMIT, &Message::Run(spore_wire::Run { instance: 1 }));
    assert_eq!(again, vec![(4, Message::Accepted(spore_wire::Accepted { instance: 1 }))]);
    assert_eq!(s.runner.runs, vec![(4, 1)]);
}

#[test]
fn uploads_are_bounded_per_link_resumed_by_their_link_and_released_by_a_new_hello() {
    let mut s = Session::new(Recorder::default(), false);
    ask(&mut s, 1, 0, &hello("", 4096));
    let begin = |d: u8| {
        Message::ModuleBegin(ModuleBegin { digest: [d; 32], size: 10, kind: ModuleKind::Wasm, compat: String::new() })
    };
    for d in 0..UPLOADS_PER_LINK as u8 {
        assert_eq!(ask(&mut s, 10 + u32::from(d), 0, &begin(d)), vec![(10 + u32::from(d), Message::Done(()))]);
    }
    assert_eq!(code(&ask(&mut s, 20, 0, &begin(9))), Some(ErrorCode::EXHAUSTED));
    let again = ask(&mut s, 21, 0, &begin(0));
    assert_eq!(again, vec![(21, Message::SendFrom(SendFrom { digest: [0; 32], offset: 3 }))]);
    let commit = Message::Commit(Commit { digest: [0; 32] });
    assert_eq!(ask(&mut s, 22, 0, &commit), vec![(22, Message::Done(()))]);
    assert_eq!(code(&ask(&mut s, 23, 0, &commit)), Some(ErrorCode::UNKNOWN_MODULE));

    ask(&mut s, 30, 0, &hello("", 4096));
    assert_eq!(s.runner.released.len(), UPLOADS_PER_LINK - 1);
    assert_eq!(s.runner.unwatched, 2, "the first HELLO and this one each start afresh");
    assert_eq!(code(&ask(&mut s, 31, 0, &commit)), Some(ErrorCode::UNKNOWN_MODULE));
}

#[test]
fn an_answer_over_the_agreed_payload_is_refused_and_logs_come_in_pieces() {
    let mut s = Session::new(Recorder { instances: 100, ..Recorder::default() }, false);
    ask(&mut s, 1, 0, &hello("", 4096));
    let answers = ask(&mut s, 2, 0, &Message::StatsRequest(()));
    let [(2, Message::Error(e))] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!(e.code, ErrorCode::TOO_LARGE);
    assert!(e.message.contains("more than the 4096 negotiated"), "{}", e.message);

    let logs = ask(&mut s, 3, 0, &Message::Logs(spore_wire::Logs { instance: 1, tail: 0 }));
    assert!(logs.len() > 5, "{}", logs.len());
    assert!(logs.iter().all(|(id, m)| *id == 3 && m.payload().len() <= 4096));
    assert_eq!(logs.last().map(|(_, m)| m), Some(&Message::Done(())));
}

#[test]
fn bad_frames_are_errors_and_the_session_goes_on() {
    let mut s = Session::new(Recorder::default(), false);
    ask(&mut s, 1, 0, &hello("", 4096));
    let mut damaged = spore_wire::encode(5, 0, &Message::Ping(Ping { nonce: 1 }));
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    assert_eq!(s.frame(Ok(&damaged)).first().map(|(id, _)| *id), Some(0), "a bad CRC's id is not trusted");
    assert_eq!(code(&s.frame(Ok(&damaged))), Some(ErrorCode::BAD_FRAME));
    let too_long = s.frame(Err(DeframeError::TooLong { max: 10 }));
    assert_eq!(code(&too_long), Some(ErrorCode::TOO_LARGE));
    assert_eq!(ask(&mut s, 6, 0, &Message::Ping(Ping { nonce: 2 })), vec![(6, Message::Pong(Pong { nonce: 2 }))]);
}

#[test]
fn a_new_agents_hello_sent_again_starts_the_link_afresh_not_from_the_cache() {
    let mut s = Session::new(Recorder::default(), false);
    ask(&mut s, 1, 0, &hello("", 4096));
    ask(&mut s, 2, 0, &spec());
    let unwatched = s.runner.unwatched;
    // The next agent's HELLO (id 1 again) arrived damaged, and it sends it again.
    let answers = ask(&mut s, 1, FLAG_RETRANSMIT, &hello("", 2048));
    let [(1, Message::HelloAck(ack))] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!(ack.max_payload, 2048, "a fresh answer, not the last agent's");
    assert_eq!(s.runner.unwatched, unwatched + 1, "the link started afresh");
    // The first agent's answers are gone with it.
    let again = ask(&mut s, 2, FLAG_RETRANSMIT, &spec());
    assert_eq!(again, vec![(2, Message::Instance(spore_wire::Instance { id: 2 }))], "{again:?}");
}

#[test]
fn a_boards_stats_of_every_app_fits_a_frame_with_their_messages_cut() {
    // Sixteen apps (a board's most) with the longest names, each ended with the longest message
    // a runner sends: STATS still answers within 4 KiB.
    let trapped = InstanceState::Ended(Outcome::Trapped("é".repeat(256)));
    let mut s = Session::new(Recorder { instances: 16, state: Some(trapped), ..Recorder::default() }, false);
    ask(&mut s, 1, 0, &hello("", 4096));
    let answers = ask(&mut s, 2, 0, &Message::StatsRequest(()));
    let [(2, Message::Stats(stats))] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!(stats.instances.len(), 16);
    for info in &stats.instances {
        let InstanceState::Ended(Outcome::Trapped(m)) = &info.state else { panic!("{:?}", info.state) };
        assert!(m.len() <= STATS_MESSAGE && m.starts_with("éé") && m.ends_with('…'), "{m}");
    }
    // With room for all of it, nothing is cut.
    s.runner.instances = 4;
    let answers = ask(&mut s, 4, 0, &Message::StatsRequest(()));
    let [(4, Message::Stats(stats))] = answers.as_slice() else { panic!("{answers:?}") };
    assert!(matches!(&stats.instances[0].state, InstanceState::Ended(Outcome::Trapped(m)) if m.len() == 512));
}

#[test]
fn an_app_name_is_checked_once_for_every_runner() {
    let mut s = Session::new(Recorder::default(), false);
    ask(&mut s, 1, 0, &hello("", 4096));
    let named = |name: &str| {
        Message::Instantiate(Instantiate {
            module: [1; 32],
            name: name.into(),
            args: Vec::new(),
            env: Vec::new(),
            limits: Limits::default(),
            boot: false,
            devices: Vec::new(),
        })
    };
    for (id, bad) in (2..).zip(["", "../etc", ".hidden", "a b", "é", &"x".repeat(65)]) {
        let answers = ask(&mut s, id, 0, &named(bad));
        let [(_, Message::Error(e))] = answers.as_slice() else { panic!("{bad:?}: {answers:?}") };
        assert_eq!(e.code, ErrorCode::BAD_PAYLOAD);
        assert!(e.message.contains("is not an app name"), "{}", e.message);
    }
    assert_eq!(s.runner.instantiated, 0, "no bad name reached the runner");
    assert!(matches!(ask(&mut s, 20, 0, &named(&"x".repeat(64))).as_slice(), [(_, Message::Instance(_))]));
}

#[test]
fn a_grant_of_a_device_the_runner_lacks_is_refused_and_an_ungranted_import_names_its_grant() {
    let mut s = Session::new(Recorder::default(), false);
    ask(&mut s, 1, 0, &hello("", 4096));
    let granted = |devices: &[&str]| {
        Message::Instantiate(Instantiate {
            module: [1; 32],
            name: "blinky".into(),
            args: Vec::new(),
            env: Vec::new(),
            limits: Limits::default(),
            boot: false,
            devices: devices.iter().map(|d| d.to_string()).collect(),
        })
    };
    let answers = ask(&mut s, 2, 0, &granted(&["gpio", "uart1"]));
    let [(_, Message::Error(e))] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!(
        (e.code, e.message.as_str()),
        (ErrorCode::BAD_PAYLOAD, "this runner has no device \"uart1\"; it has: gpio")
    );
    let answers = ask(&mut s, 3, 0, &granted(&["gpio", "gpio"]));
    let [(_, Message::Error(e))] = answers.as_slice() else { panic!("{answers:?}") };
    assert_eq!(e.message, "device \"gpio\" is granted twice; once is enough");
    assert_eq!(s.runner.instantiated, 0);
    assert!(matches!(ask(&mut s, 4, 0, &granted(&["gpio"])).as_slice(), [(_, Message::Instance(_))]));

    let devices = s.runner.describe().devices;
    let refusal = ungranted("spore:device/gpio@0.1::watch", &devices);
    assert_eq!(refusal.message, "the module imports spore:device/gpio@0.1::watch; grant it with --device gpio");
    let refusal = ungranted("spin:kv::get", &devices);
    assert_eq!(
        refusal.message,
        "the module imports spin:kv::get, which this runner does not have (WASI preview 1, and devices: gpio)"
    );
}
