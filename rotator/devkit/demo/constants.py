"""The demo's fixed choices: names, the consumer's token lifetime and the shortened timings."""

from __future__ import annotations

CREDENTIAL = "demo"
AWS_NAME = "adobe/demo"  # the secret's name in AWS Secrets Manager
TOKEN_LIFETIME_S = 1  # the sandbox's access-token lifetime: the consumer re-reads this often
CONSUMER_SCOPE = "openid,AdobeID"
POLL_INTERVAL = "250ms"
VERIFY_TIMEOUT = "10s"
MAX_DRAIN = "10m"
SETTLE_TIMEOUT_S = 60.0  # per rotation, on top of the quiet period: the demo never hangs
