"""Held-out phrasing for the redaction corpus.

Written as a list of the ways people actually put personal data into chat,
*apart from* the redactor's rules and before they were extended: the rules
are not derived from these lines, so a corpus built from them measures recall
and precision honestly.  ``pii_corpus`` turns them into labelled messages.

Placeholders: ``{n}`` a person's name, ``{x}`` the item of the template's type.
Everything here is data; the item makers (valid checksums, number plans) live
in ``pii_corpus``.
"""

from __future__ import annotations

# --- people ------------------------------------------------------------------------

FIRST_NAMES = (
    "Amelia", "Oliver", "Isla", "Harry", "Freya", "Noah", "Sophie", "Liam", "Emma", "Lucas",
    "Hannah", "Felix", "Clara", "Maximilian", "Lena", "Jonas", "Camille", "Théo", "Chloé",
    "Hugo", "Inès", "Lucía", "Alejandro", "Carmen", "Javier", "Giulia", "Lorenzo", "Francesca",
    "Matteo", "Sanne", "Daan", "Fleur", "Bram", "Niamh", "Cian", "Siobhan", "Oisín", "Kasia",
    "Piotr", "Agnieszka", "Tomasz", "Ananya", "Rohan", "Aarav", "Meera", "Kwame", "Amara",
    "Chidi", "Ngozi", "Yuki", "Haruto", "Mei", "Wei", "Jia", "Minh", "Linh", "Mohammed",
    "Layla", "Omar", "Yara", "Sven", "Astrid", "Mikael", "Sigrid", "Eero", "Aino", "Rui",
    "Beatriz", "João", "Thiago", "Valentina", "Santiago", "Zeynep", "Emre", "Nikolai",
    "Olga", "Tatiana", "Grace", "Ethan", "Madison", "Tyler", "Brooke", "Dylan", "Kayla",
    "Marcus", "Jasmine", "Devon", "Rosa", "Elif", "Anouk", "Margot", "Leon", "Ida",
)  # fmt: skip
LAST_NAMES = (
    "Taylor", "Walker", "Wright", "Thompson", "Evans", "Roberts", "Schneider", "Fischer",
    "Weber", "Becker", "Hoffmann", "Lefèvre", "Moreau", "Girard", "Fontaine", "Martínez",
    "Sánchez", "López", "Romero", "Bianchi", "Ricci", "Colombo", "Esposito", "de Vries",
    "van den Berg", "Bakker", "Visser", "O'Sullivan", "Murphy", "Byrne", "McCarthy",
    "Wiśniewski", "Zieliński", "Kamińska", "Patel", "Iyer", "Reddy", "Banerjee", "Mensah",
    "Adeyemi", "Okonkwo", "Nakamura", "Suzuki", "Watanabe", "Chen", "Wang", "Nguyen", "Tran",
    "Haddad", "Khalil", "Mansour", "Lindgren", "Andersson", "Nieminen", "Korhonen", "Silva",
    "Oliveira", "Costa", "Pereira", "Yılmaz", "Kaya", "Petrov", "Sokolova", "Harris-Jones",
    "Clarke", "Mitchell", "Brooks", "Sullivan", "Rivera", "da Silva", "Al-Farsi", "Dubois",
    "MacLeod", "Jensen", "Novák", "Horváth", "Kovačević", "Popescu", "Papadopoulos",
)  # fmt: skip

# How a planted name is written: first only, first and last, with a middle name
# or an initial.  Each entry's weight is its repetition.
NAME_SHAPES = (
    "{first}", "{first}", "{first} {last}", "{first} {last}", "{first} {last}",
    "{first} {middle} {last}", "{first} {initial}.", "{initial}. {last}",
)  # fmt: skip

# People introducing or naming themselves (or a colleague) in a turn.
SELF_ID_TEMPLATES = (
    "Hi, my name is {n} and I'm stuck on a spreadsheet formula.",
    "My name is {n}.",
    "my full name is {n}, if the form needs it",
    "Hello, I'm {n} and I run a small bakery.",
    "I'm {n}, the new volunteer coordinator.",
    "Hi! I'm {n} from the design team.",
    "Hey there, I'm {n}.",
    "I am {n}, a nurse at the county hospital.",
    "Im {n} btw, nice to meet you",
    "I’m {n} and I need a cover letter for a barista job.",
    "Name's {n}, I emailed you last week.",
    "The name's {n}.",
    "hey, {n} here, quick question about the export.",
    "Hi all, {n} here.",
    "Good morning, {n} here from logistics.",
    "Hello everyone! {n} here, I'll be taking notes today.",
    "Hi, this is {n}.",
    "This is {n} from accounting, following up on the invoice.",
    "Hello, this is {n} speaking.",
    "this is {n} from the IT helpdesk",
    "Hi, it's {n} again, about the refund.",
    "{n}, head of finance, asked me to send the numbers.",
    "I forwarded it to {n}, our HR manager.",
    "Please loop in {n}, the team lead, before Friday.",
    "{n}, CTO at a small startup, wants a second opinion.",
    "I had a call with {n} (product owner) this morning.",
    "Name: {n}",
    "Full name: {n}",
    "Full name - {n}",
    "Contact person: {n}",
    "Contact: {n}",
    "First name: {n}",
    "Customer name: {n}",
    "Applicant: {n}",
    "Account holder: {n}",
    "Call me {n}, everyone does.",
    "You can call me {n}.",
    "Everyone calls me {n}.",
    "I go by {n} at work.",
    "I am called {n} by my friends.",
)
# Sign-offs: they end a message.
SIGN_OFF_TEMPLATES = (
    "Best regards,\n{n}",
    "Kind regards,\n{n}",
    "Regards,\n{n}",
    "Regards, {n}",
    "Best,\n{n}",
    "Many thanks,\n{n}",
    "Thanks,\n{n}",
    "Thanks, {n}",
    "Thank you,\n{n}",
    "Cheers, {n}",
    "Cheers,\n{n}",
    "Sincerely,\n{n}",
    "Warm wishes,\n{n}",
    "Talk soon,\n{n}",
    "-- {n}",
    "— {n}",
    "Thanks in advance!\n{n}",
)

# --- phones ------------------------------------------------------------------------

PHONE_TEMPLATES = (
    "Call me on {x} after six.",
    "You can reach me at {x}.",
    "My number is {x}.",
    "my mobile: {x}",
    "Tel: {x}",
    "Tel. {x}",
    "tel {x}",
    "Phone {x}",
    "Phone number: {x}",
    "Ph: {x}",
    "Mob: {x}",
    "cell {x}",
    "WhatsApp me on {x}",
    "text me at {x} when you land",
    "ring me on {x}",
    "give me a call on {x} tomorrow",
    "The office line is {x}.",
    "Our hotline {x} is open nine to five.",
    "Fax: {x}",
    "{x} is my cell, text any time.",
    "If it's urgent: {x}",
    "Contact the front desk at {x}.",
    "The clinic's number is {x}, ask for the nurse.",
    "He gave me {x} as his number.",
    "Landline {x}, mobile is better though.",
)
# Country -> renderings of a number; in each, N is a random digit and the other
# characters are literal.  Number plans as the countries publish them.
PHONE_FORMATS: dict[str, tuple[str, ...]] = {
    "US": (
        "(2NN) 4NN-NNNN", "2NN-4NN-NNNN", "2NN.4NN.NNNN", "2NN 4NN NNNN", "+1 2NN 4NN NNNN",
        "+1 (2NN) 4NN-NNNN", "+1-2NN-4NN-NNNN", "1-2NN-4NN-NNNN", "2NN4NNNNNN", "001 2NN 4NN NNNN",
    ),
    "GB": (
        "07911 NNNNNN", "079NNNNNNNN", "+44 7911 NNNNNN", "+44 (0)7911 NNNNNN", "0044 7911 NNNNNN",
        "+447911NNNNNN", "020 7NNN NNNN", "(020) 7NNN NNNN", "+44 (0)20 7NNN NNNN",
        "0161 4NN NNNN", "+44 161 4NN NNNN",
    ),
    "DE": (
        "0151 2NNNNNNN", "0170/2NNNNNN", "0170 2NNNNNN", "+49 170 2NNNNNN", "+49 (0)170 2NNNNNN",
        "0049 170 2NNNNNN", "030 2NNNNNNN", "(030) 2NNNNNN", "089 2NNNNNN", "+49 30 2NNNNNNN",
        "030-2NNNNNNN", "0221 2NNNNNN", "01522NNNNNNN",
    ),
    "FR": (
        "06 NN NN NN NN", "06.NN.NN.NN.NN", "06-NN-NN-NN-NN", "06NNNNNNNN", "+33 6 NN NN NN NN",
        "+33 (0)6 NN NN NN NN", "0033 6 NN NN NN NN", "01 4N NN NN NN", "+33 1 4N NN NN NN",
        "+336NNNNNNNN", "07 5N NN NN NN",
    ),
    "NL": (
        "06 2NNNNNNN", "06-2NNNNNNN", "+31 6 2NNNNNNN", "+31 (0)6 2NNN NNNN", "020 2NN NNNN",
        "020-2NNNNNN", "0031 20 2NN NNNN",
    ),
    "ES": (
        "612 NNN NNN", "612 NN NN NN", "+34 612 NNN NNN", "0034 612 NNN NNN", "91 2NN NN NN",
        "+34 91 2NN NN NN", "6NNNNNNNN",
    ),
    "IT": (
        "347 NNN NNNN", "+39 347 NNNNNNN", "0039 347 NNN NNNN", "06 NNNN NNNN", "+39 06 NNNN NNNN",
        "02 NNNN NNNN",
    ),
    "CH": ("079 NNN NN NN", "+41 79 NNN NN NN", "044 NNN NN NN", "0041 44 NNN NN NN"),
    "AT": ("0664 NNNNNNN", "+43 664 NNNNNNN", "+43 1 2NNNNNN"),
    "BE": ("0470 NN NN NN", "+32 470 NN NN NN", "02 2NN NN NN"),
    "IE": ("087 NNN NNNN", "+353 87 NNN NNNN", "01 2NN NNNN"),
    "AU": ("0412 NNN NNN", "+61 412 NNN NNN", "(02) 9NNN NNNN", "02 9NNN NNNN"),
    "IN": ("+91 98NNN NNNNN", "098NNN NNNNN", "+91-98NNNNNNNN"),
    "BR": ("(11) 9NNNN-NNNN", "+55 11 9NNNN-NNNN"),
    "JP": ("090-NNNN-NNNN", "03-NNNN-NNNN", "+81 90 NNNN NNNN"),
}  # fmt: skip

# --- IBANs -------------------------------------------------------------------------

# Country -> BBAN structure from the SWIFT registry: n digits, a capitals, c either.
IBAN_STRUCTURES: dict[str, str] = {
    "DE": "18n", "FR": "10n11c2n", "ES": "20n", "IT": "1a10n12c", "NL": "4a10n", "BE": "12n",
    "AT": "16n", "CH": "5n12c", "PL": "24n", "PT": "21n", "GB": "4a14n", "IE": "4a14n",
    "SE": "20n", "DK": "14n", "FI": "14n", "NO": "11n", "LU": "3n13c", "GR": "7n16c",
}  # fmt: skip
# How an IBAN is written: groups of four joined by the separator, or compact;
# "lower" writes it all in lower case.
IBAN_SPACINGS = (" ", " ", " ", "", "", "-", ".", "  ", " lower", "lower", "-lower")
IBAN_TEMPLATES = (
    "Send the deposit to IBAN {x} by Friday.",
    "My IBAN is {x}.",
    "iban: {x}",
    "Please refund to {x}, thanks.",
    "Account {x} (Sparkasse).",
    "Bank details: {x}",
    "Could you double-check {x}? The bank says it's wrong.",
    "wire it to {x} pls",
)

# --- the other structured types ------------------------------------------------------

EMAIL_TEMPLATES = (
    "Drop me a line at {x}.",
    "My email is {x}",
    "email: {x}",
    "cc {x} on the thread please",
    "Is <{x}> formatted right?",
    "Send the invoice to {x}; the old one bounced.",
)
IPV4_TEMPLATES = (
    "The printer sits at {x}.",
    "ssh admin@{x} fails with a timeout",
    "Whitelist {x} in the firewall.",
    "My public IP is {x} today.",
    "GET http://{x}:8080/status returns 502",
)
IPV6_TEMPLATES = (
    "The VM got {x} from DHCPv6.",
    "ping6 {x} works but curl doesn't",
    "Bind the service to [{x}]:9000.",
    "Our prefix is {x}/64 I think.",
)
SSN_TEMPLATES = (
    "My SSN is {x}.",
    "SSN {x}",
    "Social Security No. {x}",
    "Put {x} in the SSN box.",
    "social security number: {x}",
)
CARD_TEMPLATES = (
    "Card number {x}, expiry 11/28.",
    "It charged my Visa {x} twice.",
    "Use {x} for the booking.",
    "cc: {x} cvv 123",
)
ETH_TEMPLATES = ("Send ETH to {x}.", "Is {x} my Ledger address?", "wallet {x}")
BTC_TEMPLATES = ("BTC tips: {x}", "Pay to {x} please.", "My cold wallet is {x}.")

# --- hard negatives: look like personal data, are not -----------------------------------

NEGATIVE_TEMPLATES = (
    "I'm sure it will work after a restart.",
    "I'm Sure it will work.",
    "I am happy to help with that.",
    "I'm Going to Try Again Tomorrow",
    "I'm not sure what you mean.",
    "I'm Not Sure About This",
    "This is great, thanks!",
    "This is Great News",
    "This is Python code, not JavaScript.",
    "Thanks, that fixed it.",
    "Thanks, I'll try that.",
    "Cheers for the quick reply.",
    "Best regards,\nThe Support Team",
    "Kind regards,\nCustomer Service",
    "Name: TBD",
    "Contact person: N/A",
    "- name: Checkout code",
    "Click here to download the installer.",
    "I'm Canadian, so the date format is different.",
    "We upgraded to v{v3} and the bug is gone.",
    "Running version {v4} on the server.",
    "Python {py} is installed.",
    "Firmware {v4} bricked the router.",
    "Order #{order_alnum} hasn't shipped.",
    "Your order ORD-{year}-{n6} is confirmed.",
    "Ticket {order_alnum} was closed.",
    "The log says {iso_date} {time} ERROR.",
    "Created at {epoch}.",
    "Timestamp: {epoch_ms}",
    "Meeting on {eu_date} at {hm}.",
    "Deadline {dotted_date}.",
    "ISBN {isbn13}",
    "ISBN-10: {isbn10}",
    "Commit {sha1} broke the build.",
    "sha256sum: {sha256}",
    "md5 {md5}",
    "It costs ${price} per month.",
    "Total: €{eu_price}",
    "That's {big_number} rows in the table.",
    "The range is {n3}-{n4} units.",
    "Invoice {invoice} is overdue.",
    "The UUID is {uuid}.",
    "Postcode {postcode}, second floor.",
    "Error code 0x{hex8} at startup.",
    "We shipped {n7} parcels in {year}.",
    "Lines {n3}-{n4} of the file.",
)

# Chatter without anything personal.
PLAIN = (
    "Could you shorten this paragraph a bit?",
    "That makes sense, thank you.",
    "What does this error actually mean?",
    "I tried that and it still crashes on startup.",
    "Here is the revised list with the duplicates removed.",
    "Let's keep the tone friendly but professional.",
    "Which of the two options is cheaper in the long run?",
    "Can you explain it like I'm five?",
    "The second approach avoids the extra network call.",
    "Sorry, I pasted the wrong file earlier.",
    "Please turn these notes into a short email.",
    "Good point, I hadn't thought of that.",
    "How do I undo the last commit without losing my changes?",
    "Great, that's exactly what I needed.",
    "Is there a way to do this without a loop?",
    "Can you check my grammar in the text below?",
)
