"""The local Lift Wing console: one web page that shows the sandbox and acts on it.

`ml-sandbox console` (or `up --console`) serves it on 127.0.0.1. It reads what `status`, `logs`
and `predict` read, through their own functions (`view`), and acts by running the CLI itself
(`actions`): it is a front-end, never a second implementation. `security` is what keeps a web
page on loopback from being driven by another site.
"""

HEALTH_PATH = "/api/health"  # answers 200 once the console serves (what `up --console` waits for)
