//! A busy node's work, the same in every run: the fixture's counters advance between
//! collection cycles the way a busy node's do (CPU and I/O counters every cycle, memory in
//! page steps now and then, throttling now and then), from a fixed-seed generator.

use telltale_collector::fixture::{self, Node, Runtime, Usage};

/// A small deterministic generator (xorshift), so every run sees the same workload.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One container's counters, advanced by one 15 s cycle of work.
fn advance(u: &mut Usage, rng: &mut Rng, busy: u64) {
    // CPU: up to `busy` per mille of a core for 15 s; user/system in 10 ms ticks.
    let cpu = rng.below(15_000_000 * busy / 1000);
    let user = cpu * 2 / 3 / 10_000 * 10_000;
    let system = cpu / 3 / 10_000 * 10_000;
    u.usage_usec += cpu;
    u.user_usec += user;
    u.system_usec += system;
    u.nr_periods += 150;
    if rng.below(10) == 0 {
        u.nr_throttled += 1;
        u.throttled_usec += rng.below(50_000);
    }
    // Memory moves in pages, now and then.
    if rng.below(3) == 0 {
        let pages = rng.below(64) as i64 - 32;
        let delta = pages * 4096;
        u.memory_usage = (u.memory_usage as i64 + delta).max(1 << 20) as u64;
        u.anon = (u.anon as i64 + delta).max(1 << 20) as u64;
    }
    for d in &mut u.io {
        let r = rng.below(4);
        d.rios += r;
        d.rbytes += r * 4096;
        let w = rng.below(8);
        d.wios += w;
        d.wbytes += w * 4096;
    }
}

/// The fixture node's containers and their counters.
pub struct Workload {
    rels: Vec<String>,
    usage: Vec<Usage>,
    busy: Vec<u64>,
    rng: Rng,
}

impl Workload {
    /// Populates `node` with `pods` pods holding `containers` containers (containerd);
    /// containers are idle, light, busy or very busy in turn.
    pub fn new(node: &Node, pods: usize, containers: usize) -> Workload {
        let rels = fixture::populate(node, pods, containers, Runtime::Containerd).unwrap();
        let usage = (0..rels.len())
            .map(|i| {
                let pid = 10_000 + 10 * i as u32;
                Usage {
                    pids: vec![pid, pid + 1],
                    threads: 7,
                    ..Usage::sample(i as u64)
                }
            })
            .collect();
        let busy = (0..rels.len()).map(|i| [5, 50, 200, 800][i % 4]).collect();
        Workload {
            rels,
            usage,
            busy,
            rng: Rng(0x9e37_79b9_7f4a_7c15),
        }
    }

    /// One 15 s cycle of work, written to the node's cgroup files.
    pub fn step(&mut self, node: &Node) {
        for (i, rel) in self.rels.iter().enumerate() {
            advance(&mut self.usage[i], &mut self.rng, self.busy[i]);
            node.write_cgroup(rel, &self.usage[i]).unwrap();
        }
    }
}
