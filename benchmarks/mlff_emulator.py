"""A stand-in for a CPU-heavy machine-learned force field in i-PI benchmarks.

    python benchmarks/mlff_emulator.py ADDRESS SYMBOLS_FILE [--channels 20] [--threads 1]

Connects to i-PI as a socket client and, for every request, evaluates an (untrained) e3nn network of
aptnn's architecture — by default the paper's size, 20 channels, l ≤ 2, 2 layers, 6 Å — on the bead's
geometry, then returns zero forces (LAMMPS provides the real ones). Its cost per request is that of a real
equivariant MLIP forward pass on this machine (~50 ms for 96 atoms of water), which is what an i-PI step
costs in the runs aptnn-ipi is meant for.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from ase import Atoms
from ase.io import read

from aptnn import units
from aptnn.drivers.ipi.protocol import Connection, connect, header
from aptnn.model.network import APTNetwork, ModelConfig
from aptnn.predict import APTPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("address")
    parser.add_argument("structure", help="xyz file with the atoms in i-PI's order")
    parser.add_argument("--channels", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    symbols = read(args.structure, format="xyz").get_chemical_symbols()
    net = APTNetwork(ModelConfig(species=[1, 8], channels=args.channels, avg_neighbours=20.0)).eval()
    model = APTPredictor([net])
    conn = Connection(connect(args.address))
    state = "NEEDINIT"
    try:
        while True:
            msg = conn.recv_header()
            if msg == "STATUS":
                conn.send(header(state))
            elif msg == "INIT":
                conn.recv_init()
                state = "READY"
            elif msg == "POSDATA":
                req = conn.recv_posdata(0)
                cell = req.cell * units.BOHR_TO_ANGSTROM
                model.predict_batch([Atoms(symbols, positions=req.positions * units.BOHR_TO_ANGSTROM, cell=cell,
                                           pbc=True)])
                state, nat = "HAVEDATA", len(req.positions)
            elif msg == "GETFORCE":
                conn.send_forces(0.0, np.zeros((nat, 3)), np.zeros((3, 3)), "")
                state = "NEEDINIT"
            elif msg == "EXIT":
                break
    except ConnectionResetError:
        pass


if __name__ == "__main__":
    main()
