#!/usr/bin/env python3
"""cfaccess benchmarks: what users feel, measured against a baseline in the same run.

    bench/bench.py                 # build (release), set up, run everything, print a table
    bench/bench.py --quick         # fewer runs and smaller transfers, to try the suite
    bench/bench.py --only ssh_true throughput_listener
    bench/bench.py --json out.json # also write the results as JSON (default bench/results.json)

It builds the release binaries, starts an access-edge (auto-approving logins)
and a local sshd the way the tests do, plus a TCP sink, all on 127.0.0.1,
and keeps everything in a temp dir. Short commands are timed with hyperfine
(installed with apt-get when missing); transfers are timed here. Each row is
checked against its target (TARGETS below) and the table says which are met.
Nothing touches the network beyond loopback or your ~/.cloudflared.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release"
GIB = 1 << 30
CHUNK = 1 << 20


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sh(*args, **kw):
    return subprocess.run(args, check=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, what, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"{what} did not listen on port {port}")


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Server:
    """A TCP server on a free loopback port, each connection on a thread of
    its own, handled by the subclass's `_one`."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            conn, _ = self.sock.accept()
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()


class Sink(Server):
    """Reads each connection to its end and answers with the byte count, so
    a sender knows every byte arrived."""

    @staticmethod
    def _one(conn):
        buf = bytearray(4 * CHUNK)
        total = 0
        with conn:
            while True:
                n = conn.recv_into(buf)
                if n == 0:
                    break
                total += n
            conn.sendall(total.to_bytes(8, "big"))


def send_and_confirm(port, size):
    """Sends `size` bytes to 127.0.0.1:port, half-closes, waits for the
    sink's count. Returns the seconds it took."""
    data = b"\0" * CHUNK
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        left = size
        while left:
            n = min(left, CHUNK)
            s.sendall(data[:n])
            left -= n
        s.shutdown(socket.SHUT_WR)
        got = b""
        while len(got) < 8:
            part = s.recv(8 - len(got))
            if not part:
                raise SystemExit("the sink's answer never came: the transfer broke")
            got += part
    elapsed = time.perf_counter() - start
    if int.from_bytes(got, "big") != size:
        raise SystemExit(f"the sink got {int.from_bytes(got, 'big')} bytes, not {size}")
    return elapsed


class World:
    """An sshd, a sink, an edge in front of both, and a cfaccess environment."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="cfaccess-bench-"))
        self.procs = []
        self.user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
        self.email = f"{self.user}@example.com"
        self.sink = Sink()
        self.sshd_port = free_port()
        self._sshd_on(self.sshd_port)
        self.edge = self._edge()
        self.env = dict(
            os.environ,
            HOME=str(self.tmp / "home"),
            CFACCESS_DIR=str(self.tmp / "cloudflared"),
            CFACCESS_EDGE=str(self.tmp / "edge" / "profile.json"),
            BROWSER=str(self.tmp / "edge" / "browser"),
        )
        (self.tmp / "home").mkdir()

    def _sshd_on(self, port):
        """An sshd that takes a plain key (the baselines) and certificates from
        the demo app's CA (made here, before the edge starts)."""
        d = self.tmp / "sshd"
        d.mkdir()
        for name in ("host_key", "user_key"):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name))
        ca = subprocess.run([str(BIN / "access-edge"), "ca", "generate", "--app", "ssh.demo.test",
                             "--config", str(self._edge_config()), "--state-dir", str(self.tmp / "edge")],
                            check=True, capture_output=True, text=True).stdout
        (d / "trusted_ca").write_text(ca)
        (d / "config").write_text("\n".join([
            f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}", "PidFile none",
            "UsePAM no", "StrictModes no", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password", f"AuthorizedKeysFile {d / 'user_key.pub'}",
            f"TrustedUserCAKeys {d / 'trusted_ca'}",
            # 50 sessions start at once; the default (10:30:100) drops some
            "MaxStartups 200", "",
        ]))
        Path("/run/sshd").mkdir(exist_ok=True) if os.geteuid() == 0 else None
        self.procs.append(subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "config")],
                                           stderr=open(d / "log", "w")))
        wait_port(port, "sshd")
        self.user_key = d / "user_key"

    def _edge_config(self):
        config = self.tmp / "edge.toml"
        config.write_text(f"""
team = "demo"
identities = ["{self.email}"]

[[apps]]
hostname = "ssh.demo.test"
allow = ["*@example.com"]
origin = "127.0.0.1:{self.sshd_port}"
browser_rendering = "ssh"

[[apps]]
hostname = "sink.demo.test"
allow = ["*@example.com"]
origin = "127.0.0.1:{self.sink.port}"
""")
        return config

    def _edge(self):
        config = self._edge_config()
        state = self.tmp / "edge"
        proc = subprocess.Popen(
            [str(BIN / "access-edge"), "--config", str(config), "--state-dir", str(state),
             "--auto-approve", self.email, "--log-level", "warn"],
            stdout=subprocess.DEVNULL, stderr=open(self.tmp / "edge.log", "w"))
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while not (state / "profile.json").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("access-edge did not start: " + (self.tmp / "edge.log").read_text())
            time.sleep(0.02)
        return proc

    def ssh_args(self, proxy=None, port=None):
        args = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes",
                "-i", str(self.user_key), "-l", self.user]
        if proxy:
            return args + ["-o", f"ProxyCommand={proxy}", "ssh.demo.test"]
        return args + ["-p", str(port), "127.0.0.1"]

    def proxy(self, wrapper=""):
        return f"{wrapper}{BIN / 'cfaccess'} access ssh --hostname %h"

    def cert_config(self):
        """The ssh config cfaccess prints for short-lived certificates."""
        path = self.tmp / "ssh_config"
        if not path.exists():
            out = subprocess.run([str(BIN / "cfaccess"), "ssh-config", "--hostname", "ssh.demo.test",
                                  "--short-lived-cert"], env=self.env, check=True, capture_output=True, text=True)
            path.write_text(out.stdout)
        return path

    def requests(self):
        """The edge's request counters."""
        out = subprocess.run([str(BIN / "access-edge"), "stats", "--state-dir", str(self.tmp / "edge")],
                             check=True, capture_output=True, text=True).stdout
        return dict((k, int(v)) for k, v in (line.split()[:2] for line in out.splitlines() if line.strip()))

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)


def hyperfine(world, commands, runs, warmup=3):
    """Median, min and max seconds of each command, timed by hyperfine."""
    out = world.tmp / "hyperfine.json"
    args = ["hyperfine", "-N", "--style", "none", "--warmup", str(warmup), "--runs", str(runs),
            "--export-json", str(out)]
    sh(*args, *commands, env=world.env, stdout=subprocess.DEVNULL)
    results = json.loads(out.read_text())["results"]
    return [r["times"] for r in results]


def stats(samples):
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def row(name, what, unit, samples, baseline=None, baseline_name=None, extra=None):
    """One result; `ratio` is ours over the baseline's (medians): a slowdown
    for times, a fraction of the baseline for rates."""
    r = {"name": name, "what": what, "unit": unit, **stats(samples)}
    if baseline:
        b = stats(baseline)
        r["baseline"] = {"what": baseline_name, **b}
        r["ratio"] = r["median"] / b["median"]
    r.update(extra or {})
    return r


# --- measurements -----------------------------------------------------------


def ssh_true(world, quick):
    """`ssh host true` through cfaccess and the edge, token cached, against a
    direct ssh to the same sshd."""
    sh(*world.ssh_args(world.proxy()), "true", env=world.env)  # logs in once
    runs = 10 if quick else 40
    through, direct = hyperfine(world, [
        " ".join(world.ssh_args(f"'{world.proxy()}'")) + " true",
        " ".join(world.ssh_args(port=world.sshd_port)) + " true",
    ], runs)
    return [row("ssh_true", "ssh host true via cfaccess + edge (cached token)", "s",
                through, direct, "direct ssh to the same sshd")]


def throughput_listener(world, quick):
    """A transfer through `cfaccess tcp --url` and the edge to a TCP sink,
    against a direct loopback copy to the same sink."""
    size = (GIB // 8) if quick else GIB
    runs = 2 if quick else 5
    port = free_port()
    listener = subprocess.Popen(
        [str(BIN / "cfaccess"), "access", "tcp", "--hostname", "sink.demo.test", "--url", f"127.0.0.1:{port}"],
        env=world.env, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, "cfaccess tcp --url")
        send_and_confirm(port, CHUNK)  # logs in, warms up
        direct = [send_and_confirm(world.sink.port, size) for _ in range(runs)]
        c0, e0 = cpu_seconds(listener.pid), cpu_seconds(world.edge.pid)
        through = [send_and_confirm(port, size) for _ in range(runs)]
        c1, e1 = cpu_seconds(listener.pid), cpu_seconds(world.edge.pid)
        rss = peak_rss_kib(listener.pid)
    finally:
        listener.terminate()
        listener.wait()
    gib = size * runs / GIB
    rate = lambda times: [size / t / 1e6 for t in times]  # noqa: E731
    return [row("throughput_listener", f"{size >> 20} MiB via cfaccess tcp --url + edge to a TCP sink", "MB/s",
                rate(through), rate(direct), "direct loopback TCP copy",
                extra={"cfaccess_cpu_s_per_gib": (c1 - c0) / gib, "edge_cpu_s_per_gib": (e1 - e0) / gib,
                       "cfaccess_peak_rss_kib": rss})]


def ssh_upload(world, args, size):
    """Seconds to send `size` bytes through `ssh … 'cat > /dev/null'`."""
    start = time.perf_counter()
    with subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE) as src:
        sh(*args, "cat > /dev/null", stdin=src.stdout, env=world.env)
    return time.perf_counter() - start


def proxy_with_rss(world):
    """A ProxyCommand that leaves cfaccess's peak RSS in a file. ssh hangs up
    on its ProxyCommand when done; ignoring that lets time(1) see cfaccess to
    its end (%% escapes ssh's own % tokens)."""
    rss_file = world.tmp / "rss"
    rss_file.unlink(missing_ok=True)
    return rss_file, f"sh -c \"trap '' HUP; exec /usr/bin/time -f %%M -o {rss_file} {world.proxy()}\""


def read_rss(rss_file):
    deadline = time.monotonic() + 10
    while not (rss_file.exists() and rss_file.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(rss_file.read_text().split()[-1])


def throughput_ssh(world, quick):
    """`ssh host 'cat > /dev/null'` through the ProxyCommand against direct
    ssh (runs alternate, so both see the same machine), and cfaccess's peak
    RSS meanwhile: after 1 GiB and after 4 GiB, which must be alike."""
    size = (GIB // 8) if quick else GIB
    runs = 2 if quick else 7
    # the simplest ProxyCommand there is, for reference: cat to a TCP socket,
    # with no TLS, no websocket and no edge
    cat_relay = f"bash -c 'exec 3<>/dev/tcp/127.0.0.1/{world.sshd_port}; cat <&3 & cat >&3'"
    through, direct, relay, rss = [], [], [], []
    for _ in range(runs):
        direct.append(ssh_upload(world, world.ssh_args(port=world.sshd_port), size))
        rss_file, proxy = proxy_with_rss(world)
        through.append(ssh_upload(world, world.ssh_args(proxy), size))
        rss.append(read_rss(rss_file))
        relay.append(ssh_upload(world, world.ssh_args(cat_relay), size))
    rss_file, proxy = proxy_with_rss(world)
    ssh_upload(world, world.ssh_args(proxy), size * 4)
    rss_4x = read_rss(rss_file)
    rate = lambda times: [size / t / 1e6 for t in times]  # noqa: E731
    return [
        row("throughput_ssh", f"{size >> 20} MiB via ssh 'cat > /dev/null' through cfaccess", "MB/s",
            rate(through), rate(direct), "direct ssh",
            extra={"cat_relay_ratio": statistics.median(direct) / statistics.median(relay)}),
        row("ssh_peak_rss", f"peak RSS of cfaccess ssh: {size >> 20} MiB runs, then one of {4 * size >> 20} MiB",
            "KiB", rss, extra={"after_4x_kib": rss_4x}),
    ]


def peak_rss_of(world, args, runs=11):
    """Median peak RSS (KiB) of a command, from time(1)."""
    samples = []
    for _ in range(runs):
        out = subprocess.run(["/usr/bin/time", "-f", "%M", *args], env=world.env, capture_output=True, text=True)
        samples.append(int(out.stderr.split()[-1]))
    return statistics.median(samples)


def short_commands(world, quick):
    """Whole-process timings of the commands ssh and scripts run most: ssh-gen
    with a valid certificate (the `Match exec` fast path), ssh-config, and
    token with a cached token, each against /bin/true."""
    cfaccess = str(BIN / "cfaccess")
    sh(cfaccess, "login", "-q", "https://ssh.demo.test", env=world.env, stderr=subprocess.DEVNULL)
    sh(cfaccess, "ssh-gen", "--hostname", "ssh.demo.test", env=world.env, stderr=subprocess.DEVNULL)
    commands = {
        "ssh_gen_fast": [cfaccess, "access", "ssh-gen", "--hostname", "ssh.demo.test"],
        "ssh_config": [cfaccess, "ssh-config", "--hostname", "ssh.demo.test", "--short-lived-cert"],
        "token_cached": [cfaccess, "token", "https://ssh.demo.test"],
    }
    runs = 100 if quick else 500
    before = world.requests()
    times = hyperfine(world, [" ".join(c) for c in commands.values()] + ["/bin/true"], runs, warmup=20)
    after = world.requests()
    baseline = times[-1]
    requests = sum(after.values()) - sum(before.values())
    rows = []
    for (name, args), samples in zip(commands.items(), times):
        rows.append(row(name, " ".join(args[1:]), "s", samples, baseline, "/bin/true",
                        extra={"cfaccess_peak_rss_kib": peak_rss_of(world, args)}))
    rows[0]["edge_requests_during_all_runs"] = requests
    return rows


def ssh_true_cert(world, quick):
    """`ssh host true` with a valid short-lived certificate (ssh-gen fast path,
    then the ProxyCommand), against direct ssh with a plain key."""
    config = world.cert_config()
    cert_ssh = ["ssh", "-F", str(config), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-l", world.user, "ssh.demo.test"]
    sh(*cert_ssh, "true", env=world.env, stderr=subprocess.DEVNULL)
    runs = 10 if quick else 40
    through, direct = hyperfine(world, [
        " ".join(cert_ssh) + " true",
        " ".join(world.ssh_args(port=world.sshd_port)) + " true",
    ], runs)
    return [row("ssh_true_cert", "ssh host true with a short-lived certificate via cfaccess + edge", "s",
                through, direct, "direct ssh with a plain key")]


def concurrent_logins(world, quick):
    """N ProxyCommands (`cfaccess access ssh`) started at once, each round
    with an empty token cache and an auto-approving edge: all must connect
    (each reads sshd's banner through the edge) with exactly one login. The
    time until the last is done is compared with one connection: one ssh
    session through cfaccess from an empty cache. Also reported: the same
    against one ProxyCommand alone, and what N direct connections to sshd
    cost against one (sshd forks for each, which dominates on 2 cores)."""
    n = 10 if quick else 50
    rounds = 2 if quick else 3
    command = [str(BIN / "cfaccess"), "access", "ssh", "--hostname", "ssh.demo.test"]

    def fresh_env():
        return dict(world.env, CFACCESS_DIR=str(world.tmp / f"fresh-{time.monotonic_ns()}"))

    def proxy_round(count):
        env = fresh_env()
        logins = world.requests().get("login_page", 0)
        start = time.perf_counter()
        procs = [subprocess.Popen(command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) for _ in range(count)]
        banners = []
        for p in procs:  # each carries a connection: sshd's banner comes through
            banners.append(p.stdout.readline())
            p.stdin.close()
        codes = [p.wait() for p in procs]
        elapsed = time.perf_counter() - start
        for p in procs:
            p.stdout.close()
        if any(codes) or not all(b.startswith(b"SSH-2.0-") for b in banners):
            raise SystemExit(f"of {count} ProxyCommands, {sum(1 for c in codes if c)} failed")
        made = world.requests().get("login_page", 0) - logins
        if made != 1:
            raise SystemExit(f"{count} ProxyCommands made {made} logins, not 1")
        return elapsed

    def ssh_round():
        start = time.perf_counter()
        sh(*world.ssh_args(world.proxy()), "true", env=fresh_env(), stderr=subprocess.DEVNULL)
        return time.perf_counter() - start

    def direct_round(count):
        start = time.perf_counter()
        socks = [socket.create_connection(("127.0.0.1", world.sshd_port)) for _ in range(count)]
        for s in socks:
            s.recv(64)
            s.close()
        return time.perf_counter() - start

    one_ssh = [ssh_round() for _ in range(rounds)]
    one_proxy = [proxy_round(1) for _ in range(rounds)]
    many = [proxy_round(n) for _ in range(rounds)]
    direct_one = statistics.median(direct_round(1) for _ in range(rounds))
    direct_many = statistics.median(direct_round(n) for _ in range(rounds))
    return [row("concurrent_logins", f"{n} ProxyCommands at once, empty token cache, one login", "s",
                many, one_ssh, "one ssh connection through cfaccess, empty token cache",
                extra={"vs_one_proxycommand": statistics.median(many) / statistics.median(one_proxy),
                       "sshd_alone_n_vs_one": direct_many / direct_one})]


def with_toolchain(env):
    """`env` plus where rustup and cargo keep their files: the bench's worlds
    set HOME to a temp dir, and a `cargo` run there would find no toolchain."""
    home = Path(os.environ.get("HOME", str(Path.home())))
    return dict(env, RUSTUP_HOME=os.environ.get("RUSTUP_HOME", str(home / ".rustup")),
                CARGO_HOME=os.environ.get("CARGO_HOME", str(home / ".cargo")))


def keystroke_echo(world, quick):
    """The browser terminal's keystroke-to-echo time: headless Chromium signs
    in through the edge's page, opens the terminal on the demo app's sshd and
    types keys over the DevTools protocol, each timed until its echo is in
    the terminal's DOM. The driver is the `keystroke_to_echo` test of
    tests/terminal.rs (ignored in the suite), built with --release."""
    if not Path("/usr/bin/chromium").exists():
        log("skipping keystroke_echo: no /usr/bin/chromium (apt-get install chromium)")
        return []
    keys = 50 if quick else 200
    env = with_toolchain(dict(world.env, CFACCESS_BENCH_PROFILE=str(world.tmp / "edge" / "profile.json"),
                              CFACCESS_BENCH_EMAIL=world.email, CFACCESS_BENCH_KEYS=str(keys)))
    out = subprocess.run(["cargo", "test", "--release", "--locked", "-q", "--test", "terminal", "--",
                          "--ignored", "--exact", "keystroke_to_echo", "--nocapture", "--test-threads", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("BENCH_JSON ")]
    if out.returncode != 0 or not lines:
        raise SystemExit("the keystroke_to_echo driver failed:\n" + out.stdout[-4000:] + out.stderr[-4000:])
    samples = json.loads(lines[-1][len("BENCH_JSON "):])["samples_s"]
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return [row("keystroke_echo", f"{len(samples)} keys typed over CDP until each echo is in the terminal's DOM",
                "s", samples, extra={"p90_s": p90})]


def audited_session(world, quick):
    """What an audited app (docs/protocol.md 14) adds to `ssh host true`: the
    edge terminating SSH, connecting to the origin with a short-lived
    certificate and logging the session, against the same ssh through a
    plain app. The driver is the `bench_audited_against_plain_exec` test of
    tests/audit.rs (ignored in the suite), built with --release; it runs its
    own edge and sshd, as the tests do."""
    runs = 5 if quick else 21
    env = with_toolchain(dict(os.environ, CFACCESS_BENCH_RUNS=str(runs)))
    out = subprocess.run(["cargo", "test", "--release", "--locked", "-q", "--test", "audit", "--",
                          "--ignored", "--exact", "bench_audited_against_plain_exec", "--nocapture",
                          "--test-threads", "1"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [l for l in out.stdout.splitlines() if l.startswith("{\"plain_ms\"")]
    if out.returncode != 0 or not lines:
        raise SystemExit("the audited-session driver failed:\n" + out.stdout[-4000:] + out.stderr[-4000:])
    m = json.loads(lines[-1])
    return [row("audited_session", f"ssh host true through an audited app (median of {runs})", "s",
                [m["audited_ms"] / 1000], [m["plain_ms"] / 1000], "the same through a plain app",
                extra={"edge_added_s": m["added_ms"] / 1000})]


def binary_size(world, quick):
    """The release binary's size (built with `cargo build --release -p cfaccess`)."""
    size = (BIN / "cfaccess").stat().st_size
    return [row("binary_size", "size of target/release/cfaccess", "MiB", [size / (1 << 20)])]

# --- the carrier against its peers (issue 15) --------------------------------

PEERS = {"wstunnel": None, "official": None}
PEER_HOST = "carrier.peer.test"


class Counter(Server):
    """A TCP server for one transfer at a time: uploads are read to `size`
    bytes (then `done` is set), downloads are sent `size` bytes, by `mode`."""

    def __init__(self):
        self.mode, self.size, self.done, self.got = "sink", 0, threading.Event(), 0
        super().__init__()

    def expect(self, mode, size):
        self.mode, self.size = mode, size
        self.done.clear()

    def _one(self, conn):
        with conn:
            if self.mode == "source":
                data = b"\0" * CHUNK
                for _ in range(self.size // CHUNK):
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
                conn.recv(1)
                return
            buf, got = bytearray(4 * CHUNK), 0
            while got < self.size:
                n = conn.recv_into(buf)
                if n == 0:
                    return
                got += n
                self.got = got
            self.done.set()


def transfer(counter, port, direction, size):
    """Seconds to carry `size` bytes through the listener on `port`: up to
    the counter (until it has them all), or down from it."""
    counter.expect("sink" if direction == "up" else "source", size)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        if direction == "up":
            data = b"\0" * CHUNK
            for _ in range(size // CHUNK):
                s.sendall(data)
            if not counter.done.wait(120):
                raise SystemExit(f"an upload through port {port} did not arrive (the counter has "
                                 f"{counter.got} of {size} bytes)")
        else:
            buf, got = bytearray(4 * CHUNK), 0
            while got < size:
                n = s.recv_into(buf)
                if n == 0:
                    raise SystemExit(f"a download through port {port} stopped at {got} bytes")
                got += n
    return time.perf_counter() - start


def peer_certificate(tmp):
    """A throwaway CA and a certificate for PEER_HOST, by openssl."""
    def ossl(*args):
        sh("openssl", *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=peer-ca", "-keyout", str(tmp / "ca.key"), "-out", str(tmp / "ca.pem"))
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={PEER_HOST}",
         "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "req.pem"))
    (tmp / "ext").write_text(f"subjectAltName=DNS:{PEER_HOST}\nextendedKeyUsage=serverAuth\n")
    ossl("x509", "-req", "-in", str(tmp / "req.pem"), "-CA", str(tmp / "ca.pem"), "-CAkey", str(tmp / "ca.key"),
         "-CAcreateserial", "-days", "2", "-extfile", str(tmp / "ext"), "-out", str(tmp / "cert.pem"))


def carrier_peers(world, quick):
    """The client side of the carrier against its peers, as
    ../shared/tools/carrier-peers.sh measures it: each client in listener
    mode, 1 GiB up and 1 GiB down per run; the Access clients (cfaccess and
    the official one) through a neutral TLS websocket relay with no
    authentication (examples/ws_relay.rs), wstunnel through its own server.
    The client's CPU seconds per GiB (from /proc) are the figure that
    decides; throughput on 2 cores also depends on what else runs."""
    given = {k: v for k, v in PEERS.items() if v}
    if not given:
        log("skipping carrier_peers: give --wstunnel BIN and/or --official BIN to compare the carrier with them")
        return []
    if os.geteuid() != 0:
        log("skipping carrier_peers: it must run as root (the relay takes port 443 and "
            f"{PEER_HOST} goes into /etc/hosts for the run)")
        return []
    size = (GIB // 8) if quick else GIB
    runs = 1 if quick else 3
    sh("cargo", "build", "--release", "--locked", "-q", "--example", "ws_relay", cwd=ROOT)
    relay_bin = BIN / "examples" / "ws_relay"
    tmp = world.tmp / "peers"
    tmp.mkdir()
    peer_certificate(tmp)
    hosts = Path("/etc/hosts")
    hosts_before = hosts.read_text()
    hosts.write_text(hosts_before + f"\n127.0.0.1 {PEER_HOST}\n")
    counter = Counter()
    procs = []

    def start(args, env=None, port=None):
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(p)
        if port:
            wait_port(port, args[0])
        return p

    def client_env():
        env = {k: v for k, v in os.environ.items() if k != "CFACCESS_EDGE"}
        return dict(env, SSL_CERT_FILE=str(tmp / "ca.pem"), HOME=str(tmp), CFACCESS_DIR=str(tmp / "cfg"))

    clients = []  # (name, client process, listen port)
    try:
        start([str(relay_bin), "127.0.0.1:443", f"127.0.0.1:{counter.port}", str(tmp / "cert.pem"),
               str(tmp / "key.pem")], port=443)
        access = [("cfaccess", str(BIN / "cfaccess"))] + ([("official", given["official"])] if "official" in given else [])
        for name, binary in access:
            port = free_port()
            c = start([binary, "access", "tcp", "--hostname", PEER_HOST, "--url", f"127.0.0.1:{port}"],
                      env=client_env(), port=port)
            clients.append((name, c, port))
        if "wstunnel" in given:
            server_port, port = free_port(), free_port()
            start([given["wstunnel"], "server", f"wss://127.0.0.1:{server_port}", "--tls-certificate",
                   str(tmp / "cert.pem"), "--tls-private-key", str(tmp / "key.pem"), "--restrict-to",
                   f"127.0.0.1:{counter.port}"], port=server_port)
            c = start([given["wstunnel"], "client", "-L", f"tcp://127.0.0.1:{port}:127.0.0.1:{counter.port}",
                       f"wss://127.0.0.1:{server_port}"], port=port)
            clients.append(("wstunnel", c, port))
        for name, _, port in clients:
            log(f"  warming up {name}")
            transfer(counter, port, "up", CHUNK)  # warms up (and lets the official client settle)
        figures = {name: {"up": [], "down": [], "cpu_up": [], "cpu_down": []} for name, _, _ in clients}
        for _ in range(runs):
            for direction in ("up", "down"):
                for name, c, port in clients:
                    log(f"  {name}: {size >> 20} MiB {direction}")
                    c0 = cpu_seconds(c.pid)
                    t = transfer(counter, port, direction, size)
                    figures[name][direction].append(size / t / 1e6)
                    figures[name]["cpu_" + direction].append((cpu_seconds(c.pid) - c0) / (size / GIB))
        for name, c, _ in clients:
            figures[name]["rss"] = peak_rss_kib(c.pid)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()
        hosts.write_text(hosts_before)

    med = statistics.median
    ours = figures["cfaccess"]
    rows = []
    for direction, word in (("up", "upload"), ("down", "download")):
        extra = {"cfaccess_mb_per_sec": med(ours[direction])}
        for peer in ("wstunnel", "official"):
            if peer in figures:
                extra[f"vs_{peer}_cpu"] = med(ours["cpu_" + direction]) / med(figures[peer]["cpu_" + direction])
                extra[f"vs_{peer}_rate"] = med(ours[direction]) / med(figures[peer][direction])
                extra[f"{peer}_cpu_s_per_gib"] = med(figures[peer]["cpu_" + direction])
                extra[f"{peer}_mb_per_sec"] = med(figures[peer][direction])
        rows.append(row(f"carrier_cpu_{word}", f"client CPU seconds per GiB, {size >> 20} MiB {word}s through a "
                        "listener (cfaccess and the official client via a neutral relay, wstunnel via its server)",
                        "CPU-s", ours["cpu_" + direction], extra=extra))
    rows.append(row("carrier_peak_rss", "peak RSS of the cfaccess listener over the peer runs", "KiB",
                    [ours["rss"]], extra={f"{p}_peak_rss_kib": figures[p]["rss"] for p in figures if p != "cfaccess"}))
    return rows


# What each row must reach: (field, comparison, bound); a field of "ratio"
# compares ours with the baseline (for rates, a fraction of the baseline).
TARGETS = {
    "ssh_gen_fast": [("median", "<=", 3e-3), ("cfaccess_peak_rss_kib", "<=", 3584),
                     ("edge_requests_during_all_runs", "==", 0)],
    "ssh_config": [("median", "<=", 3e-3)],
    "token_cached": [("median", "<=", 3e-3), ("cfaccess_peak_rss_kib", "<=", 4096)],
    "ssh_true_cert": [("ratio", "<=", 1.3)],
    "throughput_listener": [("ratio", ">=", 0.35)],
    "throughput_ssh": [("ratio", ">=", 0.85)],
    "ssh_peak_rss": [("max", "<=", 10240), ("after_4x_kib", "<=", 10240)],
    "concurrent_logins": [("ratio", "<=", 3.0)],
    "binary_size": [("median", "<=", 8.0)],
    "keystroke_echo": [("median", "<=", 0.020)],
    # issue 15: at most 0.5 s of the client's CPU per GiB each way, less than
    # wstunnel's, and at least its throughput and 2.5 times the official
    # client's (only the figures of the peers given are checked)
    "carrier_cpu_upload": [("median", "<=", 0.5), ("vs_wstunnel_cpu", "<", 1.0),
                           ("vs_wstunnel_rate", ">=", 1.0), ("vs_official_rate", ">=", 2.5)],
    "carrier_cpu_download": [("median", "<=", 0.5), ("vs_wstunnel_cpu", "<", 1.0),
                             ("vs_wstunnel_rate", ">=", 1.0), ("vs_official_rate", ">=", 2.5)],
    "carrier_peak_rss": [("median", "<=", 10240)],
}


def check_targets(r):
    """Adds `targets` (each with `met`) to a row."""
    ops = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
           "<": lambda a, b: a < b}
    checks = []
    for field, op, bound in TARGETS.get(r["name"], []):
        value = r.get(field)
        if value is None and field.startswith("vs_"):
            continue  # that peer was not given
        checks.append({"field": field, "op": op, "bound": bound, "value": value,
                       "met": value is not None and ops[op](value, bound)})
    r["targets"] = checks
    return r


MEASUREMENTS = {
    "short_commands": short_commands,
    "ssh_true_cert": ssh_true_cert,
    "ssh_true": ssh_true,
    "throughput_listener": throughput_listener,
    "throughput_ssh": throughput_ssh,
    "concurrent_logins": concurrent_logins,
    "binary_size": binary_size,
    "carrier_peers": carrier_peers,
    # last: their drivers are test binaries, and `cargo test --release`
    # rebuilds target/release/cfaccess with the tests' features
    "keystroke_echo": keystroke_echo,
    "audited_session": audited_session,
}


def fmt(v, unit):
    if unit == "s":
        return f"{v * 1000:.2f} ms" if v < 10 else f"{v:.1f} s"
    if unit == "MiB":
        return f"{v:.2f} MiB"
    if unit == "CPU-s":
        return f"{v:.2f} CPU-s"
    return f"{v:.0f} {unit}"


def table(rows):
    lines = [f"{'measurement':<20} {'median':>11} {'min':>11} {'max':>11} {'baseline':>11} {'ratio':>6}  "
             f"{'target':<28} notes"]
    for r in rows:
        base = fmt(r["baseline"]["median"], r["unit"]) if "baseline" in r else "-"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
        target = "; ".join(f"{t['field'].replace('cfaccess_', '')} {t['op']} {t['bound']:g} "
                           f"{'ok' if t['met'] else 'MISSED'}" for t in r["targets"]) or "-"
        notes = ", ".join(f"{k}={v:.2f}" if isinstance(v, float) and not k.endswith("_s") else
                          f"{k}={fmt(v, 's')}" if k.endswith("_s") else f"{k}={v}"
                          for k, v in r.items() if k.startswith(("cfaccess_", "edge_", "after_", "vs_", "sshd_", "cat_", "p90_",
                                                                 "wstunnel_", "official_")))
        lines.append(f"{r['name']:<20} {fmt(r['median'], r['unit']):>11} {fmt(r['min'], r['unit']):>11} "
                     f"{fmt(r['max'], r['unit']):>11} {base:>11} {ratio:>6}  {target:<28} {notes}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer runs, smaller transfers")
    ap.add_argument("--only", nargs="+", choices=sorted(MEASUREMENTS), help="run only these")
    ap.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to write the results")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already in target/release; they must come from "
                    "`cargo build --release -p cfaccess` (a --workspace build, such as the "
                    "official-client check's, unifies the edge's dependency features into "
                    "cfaccess: a bigger binary with more start-up memory than users get)")
    ap.add_argument("--wstunnel", metavar="BIN", help="a wstunnel binary: carrier_peers compares the carrier with it "
                    "(../shared/tools/build-wstunnel.sh builds one)")
    ap.add_argument("--official", metavar="BIN", help="the official cloudflared binary: carrier_peers compares the "
                    "carrier with it")
    args = ap.parse_args()
    PEERS["wstunnel"], PEERS["official"] = args.wstunnel, args.official
    for tool in ("ssh", "ssh-keygen", "/usr/sbin/sshd", "hyperfine"):
        if not shutil.which(tool):
            if tool == "hyperfine" and os.geteuid() == 0:
                sh("apt-get", "install", "-y", "-q", "hyperfine", stdin=subprocess.DEVNULL)
            else:
                raise SystemExit(f"the benchmarks need {tool} (apt-get install openssh-server openssh-client hyperfine)")
    if not args.no_build:
        log("building release binaries")
        sh("cargo", "build", "--release", "--locked", "-p", "access-edge", cwd=ROOT)
        sh("cargo", "build", "--release", "--locked", "-p", "cfaccess", cwd=ROOT)
    world = World()
    rows, failed = [], []
    try:
        for name in args.only or MEASUREMENTS:
            log(f"measuring {name}")
            try:
                rows += [check_targets(r) for r in MEASUREMENTS[name](world, args.quick)]
            except SystemExit as e:
                # one measurement that cannot be taken does not lose the others
                log(f"{name} failed: {e}")
                failed.append(name)
    finally:
        world.close()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "commit": commit.stdout.strip(),
              "cpus": os.cpu_count(), "quick": args.quick, "results": rows}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    missed = [r["name"] for r in rows if not all(t["met"] for t in r["targets"])]
    log(f"results written to {args.json}" + (f"; targets missed: {', '.join(missed)}" if missed else "; every target met"))
    if failed:
        raise SystemExit(f"these measurements failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
