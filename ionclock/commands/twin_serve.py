"""`ionclock twin-serve CONFIG`: serve a config's twins on real OS channels (the dress rehearsal).

Every ``sim://`` instrument of a clock config becomes its twin, all on one world, served on
the channel the real unit uses: serial units (Novatech 409B, SR400, Lake Shore 218, SC10,
the PrawnDO pattern generator's USB serial port) on a pty, LAN units (DG645, coil supplies,
Lake Shore 224, SCPI instruments) on a loopback TCP port. The world runs in real time: this
process's main thread advances it, under the servers' lock, every few milliseconds and
before every exchange (no other threads than the servers'). The matching lab config, with
the real resource strings (the pty's stable symlink for serial units,
``TCPIP::127.0.0.1::PORT::SOCKET`` for LAN units), is written into `--out` and its path
printed; ``ionclock run`` takes it as it takes a lab's config.

The TTL pattern: with a pattern generator served (``[instruments.pattern]``, decision 0311)
the world plays, on each start, the block the generator's twin has armed, as programmed over
its pty by the run (`PatternLoader`): nothing until a run has loaded it (dark cycles).
Without one the world plays the clock cycle's pattern, loaded here as the run's sequencer
asks for it (`_pattern`).

`--out` keeps what a restart needs: ``twin-serve.json`` (the TCP ports chosen at the first
start, and the world's start time) and one symlink per serial unit (``ROLE.tty``). Started
again on the same `--out` (after a crash or ``kill -9``), the server comes up on the same
ports and paths, its world at the time it would have reached; the units come up in their
power-on state, as after a power failure of the rack.

Faults (see `FAULTS`): from a second invocation, ``ionclock twin-serve CONFIG --out DIR
--fault "hang counter 8"``, which sends the line to the running server's control socket
(``DIR/control.sock``, one line per connection: ``KIND ROLE [SECONDS]``, answered ``ok ...``
or ``error ...``), or timed from a scenario file (`--scenario`, TOML)::

    [[fault]]
    at = 60.0          # s after this server started
    kind = "hang"      # drop | hang | power_cycle | garble
    role = "counter"   # an [instruments.ROLE] of the config
    duration = 8.0     # hang and garble only

The twins' own records, from outside: ``--history ROLE`` (control line ``history ROLE``)
prints, as one JSON list, the `history` the unit of `ROLE` keeps (a coil supply's every
change of output current, ``[t, channel, current_a]``, ``t`` in s of the served world's
time), so a test can check what the apparatus saw over several runs: a step, a drop.

SIGINT or SIGTERM ends serving (exit 0); the last line on stderr says how many cycles the
world played and how many starts were dark (``twin-serve: stopped (N cycles played, M
dark)``).
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tomllib

from ionclock.errors import ConfigError, UserError

#: The faults on command: kind -> takes a duration (s).
FAULTS = {
    "drop": False,         # the server side of the link closes (pty hang-up, TCP close)
    "hang": True,          # the unit answers nothing for SECONDS (input lost meanwhile)
    "power_cycle": False,  # the unit restarts in its power-on state (its manual's defaults)
    "garble": True,        # replies corrupted for SECONDS
}

#: Models whose real unit the lab reaches on the LAN although the driver has serial settings.
LAN_MODELS = frozenset({"dg645", "lakeshore224"})
#: Pattern generators (decision 0311): their twin plays each start's pattern on the world.
PATTERN_MODELS = frozenset({"prawndo"})

STATE_FILE = "twin-serve.json"
CONTROL = "control.sock"


def register(sub) -> None:
    p = sub.add_parser(
        "twin-serve", help="serve a config's twins on ptys and loopback TCP (real time)",
        description="Serve every sim:// instrument of CONFIG on the OS channel its real unit "
                    "uses (pty or loopback TCP), on one twin world in real time; write the "
                    "matching lab config into --out, print its path and serve until SIGINT/"
                    "SIGTERM. With --fault, send a fault to the server running on --out.")
    p.add_argument("config", help="clock config with sim:// resources (e.g. configs/sim.toml)")
    p.add_argument("--out", default=None,
                   help="folder for the lab config, pty links, ports and control socket "
                        "(default runs/twin-serve/<config name>)")
    p.add_argument("--scenario", default=None, help="TOML file of timed faults ([[fault]])")
    p.add_argument("--fault", default=None, metavar='"KIND ROLE [SECONDS]"',
                   help="send a fault to the running server: drop, hang, power_cycle, garble")
    p.add_argument("--history", default=None, metavar="ROLE",
                   help="print the running server's record of the unit of ROLE (JSON list; "
                        "a coil supply: [t_s, channel, current_a] per change of current)")
    p.set_defaults(func=run)


@dataclass(frozen=True)
class Fault:
    """One fault: `kind` (see `FAULTS`) on the unit of `role`, for `duration_s`."""

    kind: str
    role: str
    duration_s: float = 0.0
    at_s: float = 0.0


def parse_fault(text: str, roles: set[str] | None = None, key: str = "--fault") -> Fault:
    """A fault from ``KIND ROLE [SECONDS]``; a bad one is a `ConfigError` at `key`."""
    parts = text.split()
    if len(parts) not in (2, 3):
        raise ConfigError(key, f"{text!r} is not 'KIND ROLE [SECONDS]'")
    kind, role = parts[0], parts[1]
    seconds = parts[2] if len(parts) == 3 else None
    return check_fault(kind, role, seconds, roles, key)


def check_fault(kind: Any, role: Any, seconds: Any, roles: set[str] | None, key: str,
                at_s: float = 0.0) -> Fault:
    """A checked `Fault`: a known kind, a served role, a duration where the kind takes one."""
    if kind not in FAULTS:
        raise ConfigError(key, f"unknown fault {kind!r} (known: {', '.join(FAULTS)})")
    if roles is not None and role not in roles:
        raise ConfigError(key, f"no served instrument {role!r} (served: "
                               f"{', '.join(sorted(roles))})")
    if FAULTS[kind]:
        try:
            duration = float(seconds)
        except (TypeError, ValueError):
            raise ConfigError(key, f"{kind} needs a duration in seconds, got {seconds!r}") \
                from None
        if not 0.0 < duration <= 86400.0:
            raise ConfigError(key, f"duration {duration} s is not within (0, 86400]")
    else:
        if seconds is not None:
            raise ConfigError(key, f"{kind} takes no duration")
        duration = 0.0
    return Fault(kind, role, duration, at_s)


def load_scenario(path: str, roles: set[str]) -> list[Fault]:
    """The timed faults of a scenario file, in time order (see the module docstring)."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except OSError as err:
        raise UserError(f"--scenario: cannot read {path!r}: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"--scenario: {path}: {err}") from None
    unknown = set(data) - {"fault"}
    if unknown:
        raise ConfigError(f"scenario.{sorted(unknown)[0]}", "unknown section (only [[fault]])")
    faults = []
    for i, entry in enumerate(data.get("fault", [])):
        key = f"scenario.fault[{i}]"
        extra = set(entry) - {"at", "kind", "role", "duration"}
        if extra:
            raise ConfigError(f"{key}.{sorted(extra)[0]}", "unknown key")
        at = entry.get("at")
        if not isinstance(at, (int, float)) or at < 0:
            raise ConfigError(f"{key}.at", f"needs seconds >= 0, got {at!r}")
        faults.append(check_fault(entry.get("kind"), entry.get("role"), entry.get("duration"),
                                  roles, key, float(at)))
    return sorted(faults, key=lambda f: f.at_s)


def send_fault(out: Path, text: str, option: str = "--fault") -> str:
    """Send one control line (a fault, ``history ROLE``) to the server on `out`; its answer."""
    path = out / CONTROL
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5.0)
        try:
            sock.connect(str(path))
        except OSError as err:
            raise UserError(f"{option}: no twin server on {str(out)!r} ({err.strerror})") \
                from None
        sock.sendall(text.strip().encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply.decode().strip()


def default_out(config: str) -> Path:
    return Path("runs") / "twin-serve" / Path(config).stem


def run(args) -> int:
    out = Path(args.out) if args.out else default_out(args.config)
    if args.fault is not None:
        parse_fault(args.fault)   # a malformed line stops here
        reply = send_fault(out, args.fault)
        print(reply)
        return 0 if reply.startswith("ok") else 1
    if args.history is not None:
        reply = send_fault(out, f"history {args.history}", "--history")
        ok = reply.startswith("ok ")
        print(reply[3:] if ok else reply)
        return 0 if ok else 1
    return TwinServer(args.config, out, args.scenario).serve()


def lab_config_text(text: str, resources: dict[str, str], budget_config: str | None) -> str:
    """The config's text with each served role's resource replaced (comments kept).

    `budget_config`: the absolute path for ``[budget] config`` (the lab config lives in
    another folder, and a relative path is taken from the config's own).
    """
    section = None
    lines = []
    for line in text.splitlines():
        m = re.match(r"\s*\[([^\]]+)\]", line)
        if m:
            section = m.group(1).strip()
        role = section.split(".", 1)[1] if section and section.startswith("instruments.") \
            else None
        if role in resources and re.match(r"\s*resource\s*=", line):
            line = f'resource = "{resources[role]}"   # served by ionclock twin-serve'
        elif section == "budget" and budget_config and re.match(r"\s*config\s*=", line):
            line = f'config = "{budget_config}"'
        lines.append(line)
    return "\n".join(lines) + "\n"


class TwinServer:
    """The served twins of one config, their world in real time, and the fault control."""

    def __init__(self, config: str, out: Path, scenario: str | None = None):
        from ionclock.apparatus.clock_config import load_clock_config

        self.config_path = Path(config)
        self.cfg = load_clock_config(config)
        self.out = out
        self.served = {role: e for role, e in self.cfg["instruments"].items()
                       if e["resource"].startswith("sim://")}
        if not self.served:
            raise UserError(f"{config}: no sim:// instrument to serve")
        self.faults = load_scenario(scenario, set(self.served)) if scenario else []
        self.lock = threading.Lock()
        self.servers: dict[str, Any] = {}
        self.twins: dict[str, Any] = {}
        self._ends: list[tuple[float, str, str]] = []   # (monotonic, role, fault) to undo
        self._stop = False

    # --- set-up ----------------------------------------------------------------------------
    def _state(self) -> dict:
        try:
            return json.loads((self.out / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def _build_world(self, t0_unix: float):
        import simpy

        from ionclock.apparatus import registry

        cfg = self.cfg
        env = simpy.Environment()
        world = registry.make_world(env, cfg["twin"], cfg["servo"], cfg["instruments"])
        for role, entry in self.served.items():
            options = registry.twin_options(role, entry) or {}
            self.twins[role] = registry.make_twin(entry["model"], world,
                                                  f"instruments.{role}.resource", **options)
        if not any(e["model"] in PATTERN_MODELS for e in self.served.values()):
            # no pattern generator: the world plays the run's pattern, loaded here by hand
            world.load_pattern(*self._pattern())
        # else its twin is the world's pattern source (attached when made): the world plays
        # what the run's `PatternLoader` programs into it over the pty, and nothing before
        # the world's time is the time since the first start: a restart continues it
        self._t0 = time.monotonic() - max(0.0, time.time() - t0_unix)
        env.run(until=time.monotonic() - self._t0)
        return world

    def _pattern(self) -> tuple[tuple, float]:
        """The TTL pattern the run's sequencer asks for (`ClockRun._configure_instruments`).

        The counter's edges depend on its gate settings: read from its driver, configured
        as the run configures it, on a scratch twin.
        """
        from ionclock.apparatus import registry
        from ionclock.apparatus.transport import LoopbackAdapter
        from ionclock.drivers.sequencer import PulseProgram

        s = self.cfg["servo"]
        counter = self.cfg["instruments"]["counter"]
        program = PulseProgram(pi_time_s=s["pi_time_s"], ramsey_time_s=s["ramsey_time_s"],
                               cycle_time_s=s["cycle_time_s"], prepare_s=s["prepare_s"])
        cls = registry.driver_class(counter["model"])
        scratch = registry.make_twin(counter["model"], None)
        driver = cls(LoopbackAdapter(scratch, cls.write_termination, cls.read_termination))
        driver.configure_gated(counter["gate_time_s"])
        offsets = getattr(driver, "trigger_offsets", None)
        program = replace(program, detection_s=counter["gate_time_s"],
                          counter_offsets_s=tuple(offsets()) if offsets else (0.0,))
        from ionclock.apparatus.clock_run import configured_program

        program = configured_program(self.cfg, program)
        return program.edges(), program.detection_s

    def _advance(self) -> None:
        """Bring the world to the present (called under the lock)."""
        now = time.monotonic() - self._t0
        env = self.world.env
        if now > env.now:
            env.run(until=now)

    def _open(self) -> dict[str, str]:
        from ionclock.apparatus import registry
        from ionclock.sim_instruments.serve import PtyServer, TcpServer

        self.out.mkdir(parents=True, exist_ok=True)
        state = self._state()
        ports = state.get("ports", {})
        t0_unix = state.get("t0_unix", time.time())
        self.world = self._build_world(t0_unix)
        resources = {}
        for role, entry in self.served.items():
            model = entry["model"]
            cls = registry.driver_class(model)
            twin = self.twins[role]
            if hasattr(cls, "serial_settings") and model not in LAN_MODELS:
                # the lab config names the link by its absolute path: a relative one
                # (`--out runs/serve`) would be read from wherever `ionclock run` is started
                server = PtyServer(twin, self.lock, self._advance,
                                   link=(self.out / f"{role}.tty").absolute())
                resources[role] = str(server.port)
            else:
                try:
                    # a text server that greets each client first (the wavemeter's "200")
                    greet = getattr(twin, "served_greeting", None)
                    server = TcpServer(twin, self.lock, port=int(ports.get(role, 0)),
                                       advance=self._advance,
                                       greeting=greet() if greet is not None else b"")
                except OSError as err:
                    raise UserError(f"instruments.{role}: cannot listen on 127.0.0.1:"
                                    f"{ports.get(role)}: {err.strerror}") from None
                resources[role] = server.resource
                ports[role] = server.port
            self.servers[role] = server
        (self.out / STATE_FILE).write_text(json.dumps(
            {"config": str(self.config_path.resolve()), "t0_unix": t0_unix, "ports": ports,
             "pid": os.getpid()}, indent=1) + "\n")
        return resources

    def write_lab_config(self, resources: dict[str, str]) -> Path:
        """The lab config for the served twins, in `out`; its path."""
        text = lab_config_text(self.config_path.read_text(), resources,
                               str(self.cfg["budget"]["config"]))
        path = self.out / f"{self.config_path.stem}.lab.toml"
        header = (f"# Written by `ionclock twin-serve {self.config_path}`: the twins on OS "
                  "channels.\n# Run: ionclock run " + str(path) + " --out NEW_FOLDER\n")
        path.write_text(header + text)
        return path

    # --- faults ------------------------------------------------------------------------------
    def apply(self, fault: Fault) -> str:
        """Inject `fault` now; a line saying what was done."""
        server, twin = self.servers[fault.role], self.twins[fault.role]
        if fault.kind == "drop":
            server.drop()
        elif fault.kind == "hang":
            server.hang(fault.duration_s)
        elif fault.kind == "power_cycle":
            with self.lock:
                twin.power_cycle()
        elif fault.kind == "garble":
            with self.lock:
                twin.faults.garble = True
            self._ends.append((time.monotonic() + fault.duration_s, fault.role, "garble"))
        what = f"{fault.kind} {fault.role}" + (f" {fault.duration_s:g} s" if FAULTS[fault.kind]
                                               else "")
        print(f"twin-serve: {what}", file=sys.stderr, flush=True)
        return what

    def history(self, role: str) -> list:
        """The record the unit of `role` keeps (its `history`), as a JSON-ready list."""
        if role not in self.twins:
            raise ConfigError("history", f"no served instrument {role!r} (served: "
                                         f"{', '.join(sorted(self.twins))})")
        record = getattr(self.twins[role], "history", None)
        if record is None:
            raise ConfigError("history", f"{role} keeps no history")
        with self.lock:
            return [list(entry) for entry in record]

    def _control(self, listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2.0)
            data = b""
            try:
                while not data.endswith(b"\n") and len(data) < 1024:
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                line = data.decode(errors="replace").strip()
                words = line.split()
                if words[:1] == ["history"] and len(words) == 2:
                    reply = "ok " + json.dumps(self.history(words[1]))
                else:
                    reply = "ok " + self.apply(parse_fault(line, set(self.servers), key="fault"))
            except ConfigError as err:
                reply = f"error {err}"
            except OSError:
                return
            try:
                conn.sendall(reply.encode() + b"\n")
            except OSError:
                pass

    def _stop_signal(self, signum, frame) -> None:
        self._stop = True

    # --- serving -----------------------------------------------------------------------------
    def serve(self) -> int:
        """Serve until SIGINT/SIGTERM; exit status 0."""
        resources = self._open()
        control_path = self.out / CONTROL
        control_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = {s: signal.signal(s, self._stop_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            listener.bind(str(control_path))
            listener.listen(4)
            for server in self.servers.values():
                server.start()
            path = self.write_lab_config(resources)
            for role, resource in resources.items():
                print(f"twin-serve: {role:12s} {self.served[role]['model']:18s} {resource}",
                      file=sys.stderr)
            print(path, flush=True)
            started = time.monotonic()
            pending = list(self.faults)
            while not self._stop:
                try:
                    ready, _, _ = select.select([listener], [], [], 0.005)
                except InterruptedError:
                    continue
                if ready:
                    self._control(listener)
                now = time.monotonic()
                while pending and now - started >= pending[0].at_s:
                    self.apply(pending.pop(0))
                for end in [e for e in self._ends if e[0] <= now]:
                    self._ends.remove(end)
                    with self.lock:
                        self.twins[end[1]].faults.garble = False
                with self.lock:
                    self._advance()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            for server in self.servers.values():
                server.close()
            listener.close()
            control_path.unlink(missing_ok=True)
        # what the world played: a start with nothing armed on a pattern generator is dark
        print(f"twin-serve: stopped ({self.world.cycles_started} cycles played, "
              f"{self.world.dark_cycles} dark)", file=sys.stderr)
        return 0
