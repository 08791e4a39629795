"""Scripts that the peers' own Pythons run (Lucent in its virtual environment, ``benchmarks/setup_lucent.sh``):
they ship with the package, so that an installed ``preimage bench`` finds them, and import nothing from it."""

from pathlib import Path

#: The folder of the scripts.
HERE = Path(__file__).resolve().parent
