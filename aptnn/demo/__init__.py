"""Demo and test launchers (not the foundation layer): LAMMPS water MD (:mod:`aptnn.demo.water`, re-exported
here) and i-PI runs with aptnn-ipi (:mod:`aptnn.demo.ipi`)."""
from aptnn.demo.water import (  # noqa: F401
    QTIP4PF,
    SPCFW,
    WATER_DENSITY_G_CM3,
    WATER_MODELS,
    free_cores,
    geometry,
    load_lammps,
    qtip4pf_terms,
    run_water,
    spcfw_setup,
    water_data,
    water_setup,
)
