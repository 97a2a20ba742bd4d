"""Checks and normalisation of the UK identifiers a supplier gives in Part 1.

Each function returns the value in the one form we store (so that the same number typed two ways
is the same number, and the unique identifier constraint means something) or raises ValueError
with a message that can be shown next to the field as it is.

The schemes are org-id.guide's: GB-COH (Companies House), GB-CHC, GB-SC and GB-NIC (the three
charity regulators) and GB-MPR (the FCA's Mutuals Public Register).
"""
from __future__ import annotations

import re

COMPANIES_HOUSE = "GB-COH"
MUTUALS_PUBLIC_REGISTER = "GB-MPR"
CHARITY_ENGLAND_WALES = "GB-CHC"
CHARITY_SCOTLAND = "GB-SC"
CHARITY_NORTHERN_IRELAND = "GB-NIC"

COMPANY_NUMBER_MESSAGE = "Enter a company number in the correct format, like 01234567 or SC123456"
LLP_NUMBER_MESSAGE = "Enter a limited liability partnership number in the correct format, like OC123456"
CHARITY_NUMBER_MESSAGE = "Enter a charity number in the correct format, like 1187654, SC012345 or NIC100001"
MUTUALS_NUMBER_MESSAGE = "Enter a Mutuals Public Register number in the correct format, like RS007654 or 30155R"
VAT_NUMBER_MESSAGE = "Enter a VAT number in the correct format, like GB123456789"
VAT_CHECK_DIGITS_MESSAGE = "Enter a real VAT number: this one's check digits are wrong"
POSTCODE_MESSAGE = "Enter a full UK postcode, like OL1 1UT"
PHONE_MESSAGE = "Enter a telephone number, like 01632 960 001, 07700 900 982 or +44 808 157 0192"
SOLE_TRADER_MESSAGE = "A sole trader has no registration number: leave this blank"

_COMPANY = re.compile(r"[0-9]{8}|[A-Z]{2}[0-9]{6}")
_LLP = re.compile(r"(?:OC|SO|NC)[0-9]{6}")
_CHARITY_ENGLAND_WALES = re.compile(r"[0-9]{6,7}")
_CHARITY_SCOTLAND = re.compile(r"SC[0-9]{6}")
_CHARITY_NORTHERN_IRELAND = re.compile(r"NIC[0-9]{6}")
# Registered societies: "RS" numbers since 2014; before that, the old Industrial and Provident
# Societies numbers, written either as digits then "R" or with an "IP" prefix.
_MUTUALS = re.compile(r"RS[0-9]{6}|[0-9]{1,6}R|IP[0-9]{1,6}R?")
_VAT = re.compile(r"(?:GB)?([0-9]{9})([0-9]{3})?")
# The outward code patterns Royal Mail issues (A9, A99, AA9, AA99, A9A, AA9A) with the letters
# each position may hold, and an inward code whose letters exclude C, I, K, M, O and V.
_POSTCODE = re.compile(
    r"(GIR0AA|"
    r"(?:[A-PR-UWYZ](?:[0-9]{1,2}|[A-HK-Y][0-9]{1,2}|[0-9][A-HJKPSTUW]|[A-HK-Y][0-9][ABEHMNPRV-Y]))"
    r"[0-9][ABD-HJLNP-UW-Z]{2})"
)
# Weights HMRC applies to the first seven digits of a VAT registration number.
_VAT_WEIGHTS = (8, 7, 6, 5, 4, 3, 2)


def _squash(text: str | None) -> str:
    """Upper case with every space removed: people type these numbers with spaces, in any case."""
    return re.sub(r"\s+", "", text or "").upper()


def company_number(text: str | None) -> str:
    """A Companies House number: 8 digits, or 2 letters and 6 digits (SC, NI, OC...).

    Leading zeros are often dropped when a number is copied from a spreadsheet, so an all-digit
    number shorter than 8 is padded back."""
    value = _squash(text)
    if value.isdigit() and len(value) <= 8:
        value = value.zfill(8)
    if not _COMPANY.fullmatch(value):
        raise ValueError(COMPANY_NUMBER_MESSAGE)
    return value


def llp_number(text: str | None) -> str:
    """A limited liability partnership's number at Companies House: OC (England and Wales),
    SO (Scotland) or NC (Northern Ireland), then 6 digits."""
    value = _squash(text)
    if not _LLP.fullmatch(value):
        raise ValueError(LLP_NUMBER_MESSAGE)
    return value


def charity_number(text: str | None) -> tuple[str, str]:
    """(org-id scheme, number) for a charity registered in England and Wales, Scotland or
    Northern Ireland. The prefix says which regulator, so it is kept in the number."""
    value = _squash(text)
    if _CHARITY_ENGLAND_WALES.fullmatch(value):
        return CHARITY_ENGLAND_WALES, value
    if _CHARITY_SCOTLAND.fullmatch(value):
        return CHARITY_SCOTLAND, value
    if _CHARITY_NORTHERN_IRELAND.fullmatch(value):
        return CHARITY_NORTHERN_IRELAND, value
    raise ValueError(CHARITY_NUMBER_MESSAGE)


def mutuals_number(text: str | None) -> str:
    """A registered society's number on the FCA Mutuals Public Register."""
    value = _squash(text)
    if not _MUTUALS.fullmatch(value):
        raise ValueError(MUTUALS_NUMBER_MESSAGE)
    return value


def _vat_check_digits_ok(digits: str) -> bool:
    # HMRC's modulus 97 check: the weighted sum of the first seven digits plus the last two as a
    # number is a multiple of 97 (numbers issued before 2010) or is one 55 short of it (since).
    total = sum(int(d) * w for d, w in zip(digits[:7], _VAT_WEIGHTS)) + int(digits[7:9])
    return total % 97 == 0 or (total + 55) % 97 == 0


def vat_number(text: str | None) -> str:
    """A UK VAT registration number, stored as GB and 9 digits (12 for a branch or division).
    The GB prefix is optional when typed."""
    value = _squash(text)
    match = _VAT.fullmatch(value)
    if not match:
        raise ValueError(VAT_NUMBER_MESSAGE)
    if not _vat_check_digits_ok(match.group(1)):
        raise ValueError(VAT_CHECK_DIGITS_MESSAGE)
    return "GB" + match.group(1) + (match.group(2) or "")


def postcode(text: str | None) -> str:
    """A UK postcode in upper case with one space before the inward code (its last 3 characters)."""
    value = _squash(text)
    if not _POSTCODE.fullmatch(value):
        raise ValueError(POSTCODE_MESSAGE)
    return f"{value[:-3]} {value[-3:]}"


def phone_number(text: str | None) -> str:
    """A telephone number as typed (trimmed): digits with the spaces, brackets, dashes and leading
    plus people write them with; 10 to 15 digits covers UK numbers and international ones."""
    value = (text or "").strip()
    digits = re.sub(r"[^0-9]", "", value)
    if not re.fullmatch(r"\+?[0-9 ()\-]+", value) or not 10 <= len(digits) <= 15:
        raise ValueError(PHONE_MESSAGE)
    return value


def registration(legal_form: str | None, text: str | None) -> tuple[str | None, str | None]:
    """(org-id scheme, normalised number) for a registration number given for a legal form.

    A blank number gives (None, None): whether one is needed is a rule for the service, not a
    question of format. A sole trader is on no register, so any number given is refused."""
    if legal_form == "sole_trader":
        if _squash(text):
            raise ValueError(SOLE_TRADER_MESSAGE)
        return None, None
    if not _squash(text):
        return None, None
    if legal_form in ("company", "cic"):
        return COMPANIES_HOUSE, company_number(text)
    if legal_form == "partnership":
        # Only a limited liability partnership is registered (at Companies House).
        return COMPANIES_HOUSE, llp_number(text)
    if legal_form in ("co_operative", "community_benefit_society"):
        return MUTUALS_PUBLIC_REGISTER, mutuals_number(text)
    if legal_form == "charity":
        return charity_number(text)
    raise ValueError("Select your organisation's legal form before you enter its registration number")


def org_id(scheme: str | None, number: str | None) -> str | None:
    """The identifier within its org-id.guide list. The Charity Commission for Northern Ireland's
    list holds bare numbers (GB-NIC-100001), though charities write theirs with "NIC"."""
    if scheme is None or number is None:
        return None
    if scheme == CHARITY_NORTHERN_IRELAND:
        return number.removeprefix("NIC")
    return number
