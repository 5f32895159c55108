"""rotation-bot: keeps sharp's native-binary pins and base-image digests fresh and verified."""

from pathlib import Path

# Shipped data: pinned npm registry keys, the sigstore trusted root, the runbooks.
DATA_DIR = Path(__file__).resolve().parent / "data"
