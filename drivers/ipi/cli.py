"""``aptnn-ipi``: the APT model as an i-PI client, streaming dM/dt of a running (PI)MD simulation to HDF5."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import click
import numpy as np

from aptnn import units
from aptnn.cli import options
from aptnn.errors import APTNNError
from aptnn.model.fingerprint import stored_species


def _convert(kind: str, value: str, unit: str | None, target: str) -> float:
    """An i-PI input quantity in ``target`` units, through i-PI's own unit tables."""
    from ipi.utils.units import unit_to_internal, unit_to_user

    return unit_to_user(kind, target, unit_to_internal(kind, unit or "atomic_unit", float(value)))


def _to_fs(value: str, unit: str | None) -> float:
    return _convert("time", value, unit, "femtosecond")


def _to_kelvin(value: str, unit: str | None) -> float:
    return _convert("temperature", value, unit, "kelvin")


def read_ipi_input(path: str, address: str | None) -> dict:
    """dt (fs), temperature (K), nbeads, rid offset, contraction and species from an i-PI input file.

    The aptnn force is the ``<force>`` whose forcefield is the ``<ffsocket>`` with ``address`` (or named
    ``aptnn``); its request ids start after the beads of the forces listed before it.
    """
    root = ET.parse(path).getroot()
    system = root.find("system")
    if system is None:
        raise APTNNError(f"{path}: no <system> in the i-PI input")
    init = system.find("initialize")
    nbeads = int(init.get("nbeads", 1)) if init is not None else 1
    out: dict = {"nbeads": nbeads}
    ts = system.find("motion/dynamics/timestep")
    if ts is None:  # (an Element without children is falsy: no `or` here)
        ts = system.find("motion/driven_dynamics/timestep")
    if ts is not None:
        out["dt_fs"] = _to_fs(ts.text, ts.get("units"))
    temp = system.find("ensemble/temperature")
    if temp is not None:
        out["temperature_K"] = _to_kelvin(temp.text, temp.get("units"))
    sockets = {ff.get("name"): (ff.findtext("address") or "").strip() for ff in root.findall("ffsocket")}
    ours = [n for n, a in sockets.items() if address and (a == address or address.endswith(f":{a}"))]
    name = ours[0] if ours else "aptnn"
    offset = 0
    for force in system.findall("forces/force"):
        n = int(force.get("nbeads", nbeads))
        if force.get("forcefield") == name:
            out["rid_offset"], out["contracted"] = offset, n == 1 and nbeads > 1
            break
        offset += n
    else:
        raise APTNNError(f"{path}: no <force forcefield='{name}'> in <system><forces>")
    file = init.find("file") if init is not None else None
    if file is not None and file.text:
        structure = (Path(path).parent / file.text.strip())
        out["structure"] = str(structure)
    return out


def check_species(symbols: list[str], model: str, checkpoint: str, source: str) -> None:
    """The species of i-PI's atoms (from ``source``) must all be known to the model: else an error now,
    before i-PI is committed to this client."""
    from ase.data import atomic_numbers, chemical_symbols

    known = stored_species(checkpoint)
    if known is None:
        return
    unknown = sorted({s for s in symbols if atomic_numbers.get(s) not in known})
    if unknown:
        raise APTNNError(f"{source}: element(s) {unknown} unknown to the model {model} (it knows "
                         f"{[chemical_symbols[z] for z in known]})")


def check_targets(raman: bool | None, model: str, checkpoint: str) -> None:
    """The model must predict APTs, and PGTs with ``--raman``: else an error now, before the MD engine is
    committed to this client (the worker loads the model only at the first step)."""
    from aptnn.model.checkpoint import read_config

    targets = list(read_config(checkpoint).targets)
    for target, why in (("apt", "dM/dt"), ("pgt", "--raman")):
        if target not in targets and (target == "apt" or raman):
            raise APTNNError(f"model {model}: {why} needs its {target.upper()} head, but it predicts {targets} only "
                             f"(train one with --targets apt,pgt)")


def read_symbols(structure: str) -> list[str]:
    import ase.io

    try:
        return ase.io.read(structure, format="xyz" if structure.endswith(".xyz") else None).get_chemical_symbols()
    except Exception as err:
        raise APTNNError(f"{structure}: cannot read the species ({err})") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--address", required=True,
              help="i-PI socket: a unix socket name (/tmp/ipi_NAME) or host:port for inet.")
@options.model()
@click.option("-o", "--output", default="run.dmdt.h5", show_default=True,
              help="Stream file (HDF5, dM/dt in e·Å/fs); an existing one is continued (restarts).")
@click.option("--ipi-input", type=click.Path(exists=True, dir_okay=False),
              help="i-PI input XML: time step, temperature, beads, request-id offset and species come from it.")
@click.option("--structure", type=click.Path(exists=True, dir_okay=False),
              help="Any ASE-readable file with the atoms in i-PI's order (species), if not from --ipi-input.")
@click.option("--timestep", "--dt", "dt", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The MD time step in fs, as i-PI's <timestep> (default: from --ipi-input, or i-PI's INIT).")
@click.option("--temperature", type=float, default=None, help="K, stored for the spectrum.")
@click.option("--nbeads", type=int, default=None, help="Beads sent to this client per step.")
@click.option("--rid-offset", type=int, default=None, help="Request id of bead 0 (forces listed before ours).")
@click.option("--estimator", default="increment", show_default=True,
              type=click.Choice(["increment", "velocity", "apt-at-centroid", "velocity/apt-at-centroid",
                                 "centroid-apt"]),
              help="increment: Σ½(P(n)+P(n+1))·Δr per step (exact dipole change); velocity: P·central-difference "
                   "velocities; PIMD centroid: the bead mean, or with apt-at-centroid (alias centroid-apt) the "
                   "APT at the centroid with centroid increments (velocity/apt-at-centroid: centroid velocities).")
@click.option("--bec", is_flag=True, help="Return Born effective charges as i-PI `BEC` extras (driven dynamics).")
@click.option("--efield", nargs=3, type=float, default=None,
              help="Static field Ex Ey Ez in V/Å (as `aptnn label --field` and APTCalculator): return forces "
                   "F_i = P_iᵀ·E, sent to i-PI in its atomic units (hartree/bohr; 1 a.u. of field = 51.42 V/Å).")
@click.option("--nice", "worker_nice", default=10, show_default=True,
              help="Niceness of the model worker: it uses the CPU the MD leaves idle (0: same priority).")
@click.option("--worker", type=click.Choice(["process", "thread"]), default="process", show_default=True,
              help="Run the model in a child process (the socket loop never waits for it) or in a thread.")
@click.option("--queue", "queue_size", default=64, show_default=True,
              help="Steps buffered for the model thread before i-PI is held back (memory: steps × beads × atoms).")
@click.option("--connect-timeout", default=60.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds to wait for the i-PI server to accept the connection (start i-PI first, or at once "
                   "after this); then exit 2. SIGTERM/SIGINT end the wait.")
@click.option("--status-every", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between status lines on stderr (steps received, written, queued); 0: none.")
@options.apt_every
@options.raman
@options.overwrite
@options.threads(help="torch CPU threads of the model worker (default: all cores).")
@options.device
@options.compile_model
def main(address, model, output, ipi_input, structure, dt, temperature, nbeads, rid_offset, estimator, bec, efield,
         worker_nice, worker, queue_size, connect_timeout, status_every, overwrite, threads, device, compile_model,
         apt_every, apt_every_fs, raman):
    """Stream dM/dt (e·Å/fs) of a running i-PI simulation into an HDF5 file, per bead, centroid and element
    (and dα/dt, e·Å²/(V·fs), for Raman spectra when the model has a PGT head).

    Add to the i-PI input an `<ffsocket name='aptnn' mode='unix'><address>NAME</address></ffsocket>` and a
    `<force forcefield='aptnn' weight='1'/>` (the client returns zero forces; weight 0 would never be
    evaluated), then start `aptnn-ipi --address NAME --ipi-input input.xml`.

    Exit status: 0 after EXIT or a stop by SIGTERM/SIGINT (the request in flight is answered, the step
    finished and the queued steps written; a second signal stops at once), 2 on an error (one line on
    stderr), e.g. no i-PI server within --connect-timeout, species the model does not know.
    """
    import functools

    from aptnn.cli.errors import fail, start
    from aptnn.drivers.ipi.client import ClientSettings, IPIClient
    from aptnn.drivers.ipi.worker import load_predictor
    from aptnn.errors import ProtocolError
    from aptnn.estimators import species_groups
    from aptnn.model.checkpoint import resolve
    from aptnn.model.fingerprint import model_fingerprint

    start()  # warnings as one line each; malloc tuned for the model
    try:
        found = read_ipi_input(ipi_input, address) if ipi_input else {}
        structure = structure or found.get("structure")
        if not structure:
            raise APTNNError("species unknown: give --ipi-input (with an <initialize><file>) or --structure")
        symbols = read_symbols(structure)
        settings = ClientSettings(
            address=address, output=output, symbols=symbols,
            nbeads=nbeads or found.get("nbeads", 1), rid_offset=rid_offset if rid_offset is not None
            else found.get("rid_offset", 0), dt_fs=dt or found.get("dt_fs"),
            temperature_K=temperature or found.get("temperature_K"), estimator=estimator,
            contracted=found.get("contracted", False), bec=bec,
            efield=np.array(efield) / units.FIELD_AU_TO_V_PER_ANGSTROM if efield else None,  # V/Å → a.u.
            resume=not overwrite, worker_nice=worker_nice,
            queue_size=queue_size, apt_every=apt_every, apt_every_fs=apt_every_fs,
            groups=species_groups(symbols), model_label=model_fingerprint(model), raman=raman)
        checkpoint = resolve(model)  # a wrong name fails now, not in the worker once i-PI runs
        check_species(symbols, model, str(checkpoint), structure)
        check_targets(raman, model, str(checkpoint))
        loader = functools.partial(load_predictor, model, device, threads, compile_model)
        predictor = loader() if (bec or efield) else None  # replies need the model in this process
        client = IPIClient(predictor, settings, worker=worker, loader=loader, connect_timeout=connect_timeout,
                           status_every=status_every)
        client.install_signal_handlers()
        click.echo(f"aptnn-ipi: connecting to i-PI at {address} (up to {connect_timeout:g} s)")
        steps = client.run()
        if not client.connected:
            click.echo(f"aptnn-ipi: stopped while waiting for i-PI at {address}; nothing written")
            return
        click.echo(f"aptnn-ipi: {steps} steps written to {output} ({client.requests} requests, "
                   f"{client.ignored} ignored)")
    except APTNNError as err:  # one line, exit 2 (after a failed HDF5 write, without releasing the file)
        fail(err, "aptnn-ipi")
    except ConnectionError as err:  # i-PI died while we sent a reply
        fail(ProtocolError(f"lost the connection to i-PI at {address} ({err})"), "aptnn-ipi")


if __name__ == "__main__":
    main()
