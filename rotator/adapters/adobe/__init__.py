"""Adobe IMS + I/O Management API: the `AdobeApi` port (`AdobeClient`).

- `client`: the port's calls (list, add, delete, verify, invalidate) and the management
  API's URLs;
- `ims`: token minting (paced), the token cache and token invalidation;
- `transport`: the pooled HTTP client, the retry policy and request counters;
- `answers`: reading Adobe's answers (secret lists, times, Retry-After) and masking them;
- `errors`: `AdobeUnavailable` and how refusals map to the engine's error kinds.
"""

from rotator.adapters.adobe.client import MANAGEMENT_SCOPES, AdobeClient
from rotator.adapters.adobe.errors import AdobeUnavailable

__all__ = ["MANAGEMENT_SCOPES", "AdobeClient", "AdobeUnavailable"]
