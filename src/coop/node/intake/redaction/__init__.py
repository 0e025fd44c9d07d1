"""Find personal data in chat text and replace it with typed placeholders.

Pure: text in, a ``Redaction`` out (the redacted text plus every hit as offsets
into the original, for the preview page).  Each type is found by a pattern
compiled once at import and then *validated* (checksums, ranges, issuer
prefixes, numbering plans), because a shape alone flags versions, dates and
order numbers.  The rules live by family:

- ``_network``: email, IPv4, IPv6;
- ``_finance``: IBAN, payment cards, Bitcoin and Ethereum addresses;
- ``_phones`` and ``_ssn``: phone numbers and US social security numbers,
  driven by ``_numbers`` (one scan for numeric islands, and the cue words);
- ``_names``: people naming themselves or others ("I'm Jane", "Name: Jane Doe",
  "Best regards,\\nJane", "Jane Doe, head of finance").

Invariants the tests hold us to: hits are sorted and never overlap; redacting
the output again finds nothing (placeholders never match, and no rule can be
unlocked by replacing a neighbour); the text is never otherwise changed.
"""

from coop.node.intake.redaction._model import Hit, PiiType, Redaction
from coop.node.intake.redaction._redactor import redact

__all__ = ["Hit", "PiiType", "Redaction", "redact"]
