"""Real i-PI runs for examples and tests: SPC/Fw water PIMD with LAMMPS (``fix ipi``) providing the forces,
optionally with ``aptnn-ipi`` as a second forcefield streaming dM/dt."""
from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from aptnn.demo.water import spcfw_setup, water_data

IPI_INPUT = """<simulation verbosity='low' safe_stride='100'>
  <output prefix='{prefix}'>
    <properties stride='10' filename='out'> [ step, time{{femtosecond}}, temperature{{kelvin}} ] </properties>
    <trajectory filename='pos' stride='{stride}' format='xyz' cell_units='angstrom'> positions{{angstrom}} </trajectory>
    <trajectory filename='vel' stride='{stride}' format='xyz'> velocities </trajectory>
  </output>
  <total_steps>{steps}</total_steps>
  <prng><seed>{seed}</seed></prng>
  <ffsocket name='lammps' mode='unix' pbc='false'><address>{address}</address></ffsocket>{aptnn_socket}
  <system>
    <initialize nbeads='{nbeads}'>
      <file mode='xyz'> init.xyz </file>
      <velocities mode='thermal' units='kelvin'> {temperature} </velocities>
    </initialize>
    <forces><force forcefield='lammps'/>{aptnn_force}</forces>
    <ensemble><temperature units='kelvin'>{temperature}</temperature></ensemble>
    <motion mode='dynamics'>
      <dynamics mode='{ensemble}'>
        <timestep units='femtosecond'>{dt_fs}</timestep>{thermostat}
      </dynamics>
    </motion>
  </system>
</simulation>
"""


def ipi_init_xyz(data_text: str, box: float) -> str:
    """i-PI initial xyz (Å, cubic cell in the comment line) from a :func:`water_data` LAMMPS data text."""
    lines = data_text.splitlines()
    start = lines.index("Atoms # full") + 2
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line.split())
    rows.sort(key=lambda r: int(r[0]))
    out = [str(len(rows)), f"# CELL(abcABC): {box} {box} {box} 90.0 90.0 90.0 cell{{angstrom}} positions{{angstrom}}"]
    out += [f"{'O' if r[2] == '1' else 'H'} {r[4]} {r[5]} {r[6]}" for r in rows]
    return "\n".join(out) + "\n"


def lammps_ipi_client_script(data_file: str, address: str, box: float) -> str:
    """LAMMPS input that serves SPC/Fw forces to i-PI over a unix socket (``fix ipi``)."""
    return spcfw_setup(data_file, box) + f"""fix ipi all ipi {address} 32345 unix
run 100000000
"""


THERMOSTAT = "\n        <thermostat mode='pile_l'><tau units='femtosecond'>100</tau></thermostat>"


def prepare_ipi_water(workdir: str | os.PathLike, n_molecules: int = 32, nbeads: int = 4, steps: int = 40,
                      dt_fs: float = 0.25, temperature: float = 300.0, stride: int = 1, seed: int = 3,
                      nve: bool = False, aptnn: bool = True, aptnn_force: str = "<force forcefield='aptnn'/>") -> str:
    """Write ``input.xml``, ``init.xyz``, ``water.data`` and ``in.lmp`` into ``workdir``; returns the socket
    address of the LAMMPS forcefield (the aptnn one is that name + ``-apt``)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    text, box = water_data(n_molecules, seed)
    (workdir / "water.data").write_text(text)
    (workdir / "init.xyz").write_text(ipi_init_xyz(text, box))
    address = f"aptnn-{uuid.uuid4().hex[:10]}"
    socket_xml = (f"\n  <ffsocket name='aptnn' mode='unix' pbc='false'><address>{address}-apt</address></ffsocket>"
                  if aptnn else "")
    (workdir / "input.xml").write_text(IPI_INPUT.format(
        prefix="sim", stride=stride, steps=steps, seed=seed, address=address, nbeads=nbeads,
        temperature=temperature, dt_fs=dt_fs, ensemble="nve" if nve else "nvt",
        thermostat="" if nve else THERMOSTAT, aptnn_socket=socket_xml, aptnn_force=aptnn_force if aptnn else ""))
    (workdir / "in.lmp").write_text(lammps_ipi_client_script("water.data", address, box))
    return address


LAMMPS_CLIENT = ("import aptnn.demo as d; lmp = d.load_lammps()(cmdargs=['-log', 'none', '-screen', 'none', "
                 "'-nocite'])\ntry:\n    lmp.file('in.lmp')\nexcept Exception:\n    pass\n")


def time_scale() -> float:
    """Factor on every wait of these runs (env ``APTNN_TEST_TIME_SCALE``, default 1): raise it on a slow or
    loaded machine."""
    return float(os.environ.get("APTNN_TEST_TIME_SCALE", "1"))


def progress(workdir: str | os.PathLike) -> tuple[int, int]:
    """A value that changes whenever a run in ``workdir`` makes progress: total size and latest modification
    time (ns) of the files in it (i-PI's output and logs, the stream file)."""
    size = latest = 0
    for entry in os.scandir(workdir):
        try:
            if entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                size, latest = size + st.st_size, max(latest, st.st_mtime_ns)
        except FileNotFoundError:  # removed since it was listed (a writer's lock file, a renamed .part)
            continue
    return size, latest


def wait_until(done, workdir: str | os.PathLike | None, stall_s: float = 120.0, cap_s: float | None = None,
               poll_s: float = 0.1) -> bool:
    """Wait until ``done()``; give up (False) when nothing in ``workdir`` changed for ``stall_s`` seconds, or
    after ``cap_s`` (default 20 × ``stall_s``) in all; both scaled by :func:`time_scale`. Without
    ``workdir`` ``stall_s`` is a plain time limit."""
    stall_s *= time_scale()
    cap_s = (cap_s * time_scale()) if cap_s is not None else 20 * stall_s
    start = last_change = time.monotonic()
    seen = progress(workdir) if workdir is not None else None
    while not done():
        now = time.monotonic()
        if workdir is not None:
            current = progress(workdir)
            if current != seen:
                seen, last_change = current, now
        if now - last_change > stall_s or now - start > cap_s:
            return False
        time.sleep(poll_s)
    return True


def start_ipi(workdir: Path, address: str, input_file: str = "input.xml") -> tuple[subprocess.Popen, subprocess.Popen]:
    """Start the i-PI server on ``input_file`` and, once its socket exists, the LAMMPS force client."""
    server = subprocess.Popen([str(Path(sys.executable).with_name("i-pi")), input_file], cwd=workdir,
                              stdout=open(Path(workdir) / "ipi.log", "a"), stderr=subprocess.STDOUT)
    socket = Path("/tmp") / f"ipi_{address}"
    wait_until(lambda: socket.exists() or server.poll() is not None, None, stall_s=300.0)
    client = subprocess.Popen([sys.executable, "-c", LAMMPS_CLIENT], cwd=workdir, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    return server, client


def start_aptnn(workdir: Path, address: str, args: list[str], log: str = "aptnn-ipi.log",
                env: dict | None = None) -> subprocess.Popen:
    """Start ``aptnn-ipi --address <address>-apt --ipi-input input.xml ARGS`` in ``workdir``."""
    return subprocess.Popen([sys.executable, "-m", "aptnn.drivers.ipi.cli", "--address", f"{address}-apt",
                             "--ipi-input", "input.xml", *args], cwd=workdir,
                            stdout=open(Path(workdir) / log, "a"), stderr=subprocess.STDOUT,
                            env=None if env is None else {**os.environ, **env})


def finish(procs: list[subprocess.Popen | None], timeout: float, workdir: str | os.PathLike | None = None) -> None:
    """Wait for every process; if one fails while others still run (i-PI would wait for it forever), or the
    time runs out, kill the rest. With ``workdir`` the time runs out only when the run makes no progress
    (see :func:`wait_until`) for ``timeout`` seconds; without it after ``timeout`` seconds (both scaled by
    :func:`time_scale`)."""
    procs = [p for p in procs if p is not None]

    def over() -> bool:
        return all(p.poll() is not None for p in procs) or any(p.returncode not in (None, 0) for p in procs)
    try:
        wait_until(over, workdir, stall_s=timeout, poll_s=0.05)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run_ipi_pimd(workdir: str | os.PathLike, n_molecules: int = 32, nbeads: int = 4, steps: int = 40,
                 dt_fs: float = 0.25, temperature: float = 300.0, stride: int = 1, seed: int = 3,
                 timeout: float = 300.0, nve: bool = False, aptnn_args: list[str] | None = None,
                 aptnn_force: str = "<force forcefield='aptnn'/>") -> Path:
    """A real i-PI PIMD run of SPC/Fw water with LAMMPS (``fix ipi``) as the force engine.

    Writes ``sim.pos_<k>.xyz`` (Å) and ``sim.vel_<k>.xyz`` (atomic units) for every bead in ``workdir``;
    returns the path of ``sim.pos_0.xyz``. The run is stopped when its output stops growing for ``timeout``
    seconds (times ``APTNN_TEST_TIME_SCALE``); see :func:`finish`. With ``aptnn_args`` an ``aptnn-ipi``
    client (those arguments added to ``--address … --ipi-input input.xml``) is run as a second forcefield
    (``aptnn_force``).
    """
    workdir = Path(workdir)
    address = prepare_ipi_water(workdir, n_molecules, nbeads, steps, dt_fs, temperature, stride, seed, nve,
                                aptnn_args is not None, aptnn_force)
    server, client = start_ipi(workdir, address)
    apt = start_aptnn(workdir, address, aptnn_args) if aptnn_args is not None else None
    finish([server, client, apt], timeout, workdir)  # timeout: without progress (see finish)
    if server.returncode != 0:
        raise RuntimeError(f"i-PI failed (exit {server.returncode}); see {workdir / 'ipi.log'}")
    if apt is not None and apt.returncode != 0:
        raise RuntimeError(f"aptnn-ipi failed: {(workdir / 'aptnn-ipi.log').read_text()[-2000:]}")
    return workdir / "sim.pos_0.xyz"


def kill_all(*procs: subprocess.Popen | None) -> None:
    """SIGKILL and reap the processes still running."""
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


def tagged() -> tuple[str, dict]:
    """A tag for the environment of an aptnn-ipi run: its children (worker, resource tracker) inherit it."""
    tag = uuid.uuid4().hex
    return tag, {"APTNN_TEST_TAG": tag}


def tagged_pids(tag: str) -> list[int]:
    """Live processes carrying ``tag`` in their environment (Linux /proc; zombies read empty)."""
    marker, out = f"APTNN_TEST_TAG={tag}".encode(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def add_to_aptnn_socket(workdir: Path, address: str, xml: str) -> None:
    """Add settings (e.g. ``<timeout>``) to the aptnn ``<ffsocket>`` of ``workdir``/input.xml."""
    text = (Path(workdir) / "input.xml").read_text()
    (Path(workdir) / "input.xml").write_text(text.replace(f"<address>{address}-apt</address>",
                                                          f"<address>{address}-apt</address>{xml}"))
