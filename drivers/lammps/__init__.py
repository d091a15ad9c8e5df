"""aptnn-lammps: dM/dt streamed from inside a LAMMPS run (the LAMMPS Python module, fix external)."""
