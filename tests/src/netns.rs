//! A second host for the tests: a network namespace joined to this one by a veth pair, whose
//! nftables rules drop a share of the datagrams that cross it at random (`numgen random`: the
//! kernel here has no netem). A client run in it reaches the engine over a real link, and
//! whatever it loses the kernel lost. Needs CAP_NET_ADMIN (CI runs as root).

use std::net::Ipv4Addr;
use std::process::Command;

/// The namespace and its link; deleted (with the veth pair) on drop.
pub struct Netns {
    pub name: String,
    /// This side's address on the link.
    pub host_ip: Ipv4Addr,
    /// The namespace's address on the link.
    pub peer_ip: Ipv4Addr,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A namespace named after `tag` and this process, with a /30 link of its own (so two
    /// test processes at once do not collide).
    pub fn create(tag: &str) -> Netns {
        let pid = std::process::id();
        let name = format!("ee-{tag}-{pid}");
        let (host_if, peer_if) = (format!("eeh{pid}"), format!("eep{pid}"));
        let (b, c) = (((pid >> 6) & 0xff) as u8, ((pid & 0x3f) << 2) as u8);
        let host_ip = Ipv4Addr::new(10, 213 + (pid >> 14 & 0x1f) as u8, b, c + 1);
        let peer_ip = Ipv4Addr::new(10, 213 + (pid >> 14 & 0x1f) as u8, b, c + 2);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            host_ip,
            peer_ip,
        };
        let n = ns.name.as_str();
        run(&[
            "ip", "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
        ]);
        run(&["ip", "link", "set", &peer_if, "netns", n]);
        run(&[
            "ip",
            "addr",
            "add",
            &format!("{host_ip}/30"),
            "dev",
            &host_if,
        ]);
        run(&["ip", "link", "set", &host_if, "up"]);
        let peer_addr = format!("{peer_ip}/30");
        run(&[
            "ip", "netns", "exec", n, "ip", "addr", "add", &peer_addr, "dev", &peer_if,
        ]);
        run(&[
            "ip", "netns", "exec", n, "ip", "link", "set", &peer_if, "up",
        ]);
        run(&["ip", "netns", "exec", n, "ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Drops `percent` of the UDP datagrams the namespace sends and of those it receives, at
    /// random, counting them.
    pub fn drop_udp(&self, percent: u32) {
        let rules = format!(
            "table inet loss {{\n\
               chain input {{ type filter hook input priority 0; \
                 meta l4proto udp numgen random mod 100 < {percent} counter drop; }}\n\
               chain output {{ type filter hook output priority 0; \
                 meta l4proto udp numgen random mod 100 < {percent} counter drop; }}\n\
             }}\n"
        );
        let file = std::env::temp_dir().join(format!("{}.nft", self.name));
        std::fs::write(&file, rules).unwrap();
        run(&[
            "ip",
            "netns",
            "exec",
            &self.name,
            "nft",
            "-f",
            file.to_str().unwrap(),
        ]);
        let _ = std::fs::remove_file(file);
    }

    /// The datagrams the rules of [`Netns::drop_udp`] dropped so far, both ways.
    pub fn dropped(&self) -> u64 {
        let out = Command::new("ip")
            .args([
                "netns", "exec", &self.name, "nft", "list", "table", "inet", "loss",
            ])
            .output()
            .expect("nft");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split("counter packets ")
            .skip(1)
            .filter_map(|rest| rest.split(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
