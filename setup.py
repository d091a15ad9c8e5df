"""Package discovery (metadata lives in setup.cfg): every package under aptnn/, and the MD-engine clients of the
top-level drivers/ folder installed as aptnn.drivers.*, found automatically so no subpackage is ever left out."""
from setuptools import find_packages, setup

drivers = ["aptnn." + name for name in find_packages(include=["drivers", "drivers.*"])]
setup(packages=find_packages(include=["aptnn", "aptnn.*"]) + drivers, package_dir={"aptnn.drivers": "drivers"})
