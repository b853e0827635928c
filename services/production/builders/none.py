"""No stand-in model for this isvc yet: exits 2 with the reason that service.yaml gives.

python none.py REASON OUTPUT
"""

import sys

if __name__ == "__main__":
    reason = sys.argv[1] if len(sys.argv) > 2 else "no reason given"
    print(f"no stand-in model: {reason}", file=sys.stderr)
    sys.exit(2)
