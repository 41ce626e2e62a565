"""The Go parsers Knative Serving 1.17 and 1.18 apply to ConfigMap values, emulated exactly.

Knative reads its ConfigMaps through knative.dev/pkg/configmap, which hands the raw string (untrimmed) to
Go's ``strconv.ParseBool``, ``strconv.ParseInt(s, 10, n)``, ``strconv.Atoi``, ``strconv.ParseFloat(s, 64)``,
``time.ParseDuration`` and k8s.io/apimachinery's ``resource.ParseQuantity``; names and label selectors are
checked with k8s.io/apimachinery/pkg/util/validation (apimachinery v0.31 in Serving 1.17, v0.32 in 1.18: the
same rules for what is used here; v0.32 only adds functions and rewords messages).
The functions here accept and refuse the same strings, return the same values and raise
:class:`GoParseError` carrying Go's own error text, so a value can be checked before it reaches a cluster.

Go works on the UTF-8 bytes of a string, Python on code points; where that makes a difference (lengths,
quoting in messages) the byte view is used. Every non-ASCII character is refused by the number parsers.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Mapping
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, ROUND_UP, Context, Decimal

__all__ = [
    "GoParseError",
    "atoi",
    "is_dns1123_label",
    "is_dns1123_subdomain",
    "is_qualified_name",
    "is_valid_label_value",
    "parse_bool",
    "parse_duration",
    "parse_duration_ns",
    "parse_float",
    "parse_int",
    "parse_quantity",
    "valid_label_selector_map",
]


class GoParseError(ValueError):
    """A value Go refuses; ``str(err)`` is the message Go's error would print."""


_HEX_LETTERS = "abcdefABCDEF"
_INT64_MAX = (1 << 63) - 1
_UINT64 = 1 << 64


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"  # ASCII only: str.isdigit() would also take "٣" or "²"


def _int32(n: int) -> int:
    """Wrap like a Go int32 conversion or int32 arithmetic."""
    return (n + (1 << 31)) % (1 << 32) - (1 << 31)


def _byte_len(s: str) -> int:
    """Go's len(s): the number of UTF-8 bytes."""
    return len(s.encode("utf-8", "surrogatepass"))


# --- quoting, as Go prints strings in error messages ---------------------------------------------------------

_C_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _quote(s: str) -> str:
    """strconv.Quote (also what fmt's %q does with a string).

    Printable characters are kept; Go's definition of printable (letters, marks, numbers, punctuation,
    symbols and the ASCII space) is the one str.isprintable() implements, up to the Unicode versions of the
    two languages (characters assigned after Python's Unicode version are escaped here, kept by Go).
    """
    out = ['"']
    for ch in s:
        r = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xD800 <= r <= 0xDFFF:  # cannot be in a Go string: Go would see invalid UTF-8 bytes
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        elif ch.isprintable():
            out.append(ch)
        elif ch in _C_ESCAPES:
            out.append(_C_ESCAPES[ch])
        elif r < 0x20 or r == 0x7F:
            out.append(f"\\x{r:02x}")
        elif r < 0x10000:
            out.append(f"\\u{r:04x}")
        else:
            out.append(f"\\U{r:08x}")
    out.append('"')
    return "".join(out)


def _time_quote(s: str) -> str:
    """The time package's own quote(): the UTF-8 bytes of anything outside printable ASCII become \\xNN."""
    out = ['"']
    for ch in s:
        if ch >= "\x80" or ch < " ":
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", "surrogatepass"))
        else:
            if ch in '"\\':
                out.append("\\")
            out.append(ch)
    out.append('"')
    return "".join(out)


def _num_error(fn: str, s: str, reason: str) -> GoParseError:
    return GoParseError(f"strconv.{fn}: parsing {_quote(s)}: {reason}")


# --- strconv.ParseBool, ParseInt, Atoi ------------------------------------------------------------------------

_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def parse_bool(s: str) -> bool:
    """strconv.ParseBool: exactly 1 t T true TRUE True / 0 f F false FALSE False."""
    if s in _TRUE:
        return True
    if s in _FALSE:
        return False
    raise _num_error("ParseBool", s, "invalid syntax")


def _parse_int10(s: str, bit_size: int, fn: str) -> int:
    if s == "":
        raise _num_error(fn, s, "invalid syntax")
    neg = s[0] == "-"
    digits = s[1:] if s[0] in "+-" else s
    # What follows is ParseUint(digits, 10, bit_size), then ParseInt's signed range check.
    if digits == "":
        raise _num_error(fn, s, "invalid syntax")
    if bit_size == 0:
        bit_size = 64
    elif not 0 < bit_size <= 64:
        raise _num_error(fn, s, f"invalid bit size {bit_size}")
    max_val = (1 << bit_size) - 1
    n = 0
    for c in digits:
        if not _is_digit(c):
            raise _num_error(fn, s, "invalid syntax")
        n = n * 10 + ord(c) - 48
        if n > max_val:
            # Go stops at the first digit that overflows: later garbage is never looked at.
            n = max_val
            break
    cutoff = 1 << (bit_size - 1)
    if (not neg and n >= cutoff) or (neg and n > cutoff):
        raise _num_error(fn, s, "value out of range")
    # With bit_size 1 an overflowing negative number ends up here as -1, without error, as in Go.
    return -n if neg else n


def parse_int(s: str, bit_size: int = 64) -> int:
    """strconv.ParseInt(s, 10, bit_size): optional sign, ASCII digits only (no prefix, no underscore).

    bit_size 0 means 64 (Go's int on 64-bit platforms); values outside the signed range of bit_size bits
    raise "value out of range".
    """
    return _parse_int10(s, bit_size, "ParseInt")


def atoi(s: str) -> int:
    """strconv.Atoi on a 64-bit platform: ParseInt(s, 10, 0) with Atoi in the message."""
    return _parse_int10(s, 64, "Atoi")


# --- strconv.ParseFloat(s, 64) --------------------------------------------------------------------------------
#
# Go's pipeline is reproduced step by step, because it is not simply "round the exact value": a decimal string
# with more than 800 significant digits before its point is misread by Go's slow path (its 800-digit buffer
# stops counting the integer digits), and whether that path is reached depends on the Eisel-Lemire fast path.

_M64 = (1 << 64) - 1
_GO_NAN = struct.unpack("<d", (0x7FF8000000000001).to_bytes(8, "little"))[0]  # Go's NaN bit pattern
_FLOAT64_POW10 = [float(10**k) for k in range(23)]  # exact


def _ascii_lower(c: str) -> str:
    return chr(ord(c) + 32) if "A" <= c <= "Z" else c


def _common_prefix_len_ignore_case(s: str, prefix: str) -> int:
    n = 0
    for a, b in zip(s, prefix, strict=False):
        if _ascii_lower(a) != b:
            break
        n += 1
    return n


def _special(s: str) -> tuple[float, int] | None:
    """Go's special(): a leading [+-]inf, [+-]infinity or nan (no sign), any case; (value, length used)."""
    if not s:
        return None
    c = s[0]
    if c in "+-iI":
        nsign = 1 if c in "+-" else 0
        n = _common_prefix_len_ignore_case(s[nsign:], "infinity")
        if 3 < n < 8:  # "infin" counts as "inf" followed by garbage
            n = 3
        if n in (3, 8):
            return (-math.inf if c == "-" else math.inf), nsign + n
    elif c in "nN" and _common_prefix_len_ignore_case(s, "nan") == 3:
        return _GO_NAN, 3
    return None


def _underscore_ok(s: str) -> bool:
    """Go's underscoreOK: underscores only between digits, or between a base prefix and a digit."""
    saw = "^"
    i = 0
    if s[:1] in ("+", "-"):
        s = s[1:]
    hexa = False
    if len(s) >= 2 and s[0] == "0" and _ascii_lower(s[1]) in "box":
        i = 2
        saw = "0"
        hexa = _ascii_lower(s[1]) == "x"
    for c in s[i:]:
        if _is_digit(c) or (hexa and c in _HEX_LETTERS):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _read_exponent(s: str, i: int) -> tuple[int, int, bool] | None:
    """The digits after an 'e'/'p' at s[i-1]: (exponent, end, underscores seen), None if there are none.

    As in Go, digits stop counting once the exponent reaches 10000 ("1e123456" means 1e12345).
    """
    n = len(s)
    if i >= n:
        return None
    esign = 1
    if s[i] in "+-":
        esign = -1 if s[i] == "-" else 1
        i += 1
    if i >= n or not _is_digit(s[i]):
        return None
    e, underscores = 0, False
    while i < n and (_is_digit(s[i]) or s[i] == "_"):
        if s[i] == "_":
            underscores = True
        elif e < 10000:
            e = e * 10 + ord(s[i]) - 48
        i += 1
    return esign * e, i, underscores


def _read_float(s: str) -> tuple[int, int, bool, bool, bool, int] | None:
    """Go's readFloat: (mantissa, exp, neg, trunc, hex, chars used); None where Go reports a syntax error.

    The mantissa keeps 19 decimal (16 hex) significant digits, trunc tells whether a non-zero one was dropped;
    the value is mantissa * 10**exp (mantissa * 2**exp for hex).
    """
    n = len(s)
    if n == 0:
        return None
    i = 1 if s[0] in "+-" else 0
    neg = s[0] == "-"
    hexa = i + 2 < n and s[i] == "0" and s[i + 1] in "xX"
    base, max_digits = (16, 16) if hexa else (10, 19)
    if hexa:
        i += 2
    underscores = sawdot = sawdigits = trunc = False
    mantissa = nd = nd_mant = dp = 0
    while i < n:
        c = s[i]
        if c == "_":
            underscores = True
        elif c == ".":
            if sawdot:
                break
            sawdot, dp = True, nd
        elif _is_digit(c) or (hexa and c in _HEX_LETTERS):
            sawdigits = True
            if c == "0" and nd == 0:  # leading zero
                dp -= 1
            else:
                nd += 1
                if nd_mant < max_digits:
                    mantissa = mantissa * base + int(c, 16)
                    nd_mant += 1
                elif c != "0":
                    trunc = True
        else:
            break
        i += 1
    if not sawdigits:
        return None
    if not sawdot:
        dp = nd
    if hexa:
        dp, nd_mant = dp * 4, nd_mant * 4
    if i < n and _ascii_lower(s[i]) == ("p" if hexa else "e"):
        exponent = _read_exponent(s, i + 1)
        if exponent is None:
            return None
        e, i, exp_underscores = exponent
        dp += e
        underscores = underscores or exp_underscores
    elif hexa:
        return None  # a hexadecimal mantissa needs a 'p' exponent
    if underscores and not _underscore_ok(s[:i]):
        return None
    return mantissa, (dp - nd_mant if mantissa else 0), neg, trunc, hexa, i


def _bits_to_float(bits: int) -> float:
    return struct.unpack("<d", bits.to_bytes(8, "little"))[0]


def _atof_hex(mantissa: int, exp: int, neg: bool, trunc: bool) -> float | None:
    """Go's atofHex for float64 (round to nearest even, with trunc as a sticky bit); None on overflow."""
    exp += 52
    while mantissa and not mantissa >> 54:
        mantissa <<= 1
        exp -= 1
    if trunc:
        mantissa |= 1
    while mantissa >> 55:
        mantissa = mantissa >> 1 | mantissa & 1
        exp += 1
    while mantissa > 1 and exp < -1022 - 2:  # denormalize
        mantissa = mantissa >> 1 | mantissa & 1
        exp += 1
    round_bits = mantissa & 3
    mantissa >>= 2
    round_bits |= mantissa & 1  # round half to even
    exp += 2
    if round_bits == 3:
        mantissa += 1
        if mantissa == 1 << 53:
            mantissa >>= 1
            exp += 1
    if not mantissa >> 52:  # denormal or zero
        exp = -1023
    if exp > 1023:
        return None
    return _bits_to_float(mantissa & ((1 << 52) - 1) | ((exp + 1023) & 0x7FF) << 52 | neg << 63)


def _atof64_exact(mantissa: int, exp: int, neg: bool) -> float | None:
    """Go's atof64exact: the cases plain float64 arithmetic gets exactly right."""
    if mantissa >> 52:
        return None
    f = -float(mantissa) if neg else float(mantissa)
    if exp == 0:
        return f
    if 0 < exp <= 15 + 22:
        if exp > 22:
            f *= _FLOAT64_POW10[exp - 22]
            exp = 22
        if f > 1e15 or f < -1e15:
            return None
        return f * _FLOAT64_POW10[exp]
    if -22 <= exp < 0:
        return f / _FLOAT64_POW10[-exp]
    return None


@functools.cache
def _pow10_128(e: int) -> tuple[int, int]:
    """Go's pow10Tab entry: the top 128 bits of 10**e (truncated), as (hi, lo)."""
    if e >= 0:
        p = 10**e
        shift = 128 - p.bit_length()
        d = p << shift if shift >= 0 else p >> -shift
    else:
        p = 10**-e
        d = (1 << (127 + p.bit_length())) // p
    return d >> 64, d & _M64


def _eisel_lemire64(man: int, exp10: int, neg: bool) -> float | None:
    """Go's eiselLemire64: the float64 nearest man * 10**exp10, or None where the algorithm gives up."""
    if man == 0:
        return -0.0 if neg else 0.0
    if not -348 <= exp10 <= 347:
        return None
    pow_hi, pow_lo = _pow10_128(exp10)
    clz = 64 - man.bit_length()
    man <<= clz
    ret_exp2 = 1 + ((exp10 * 108853) >> 15) + 63 + 1023 - clz
    product = man * pow_hi
    x_hi, x_lo = product >> 64, product & _M64
    if x_hi & 0x1FF == 0x1FF and x_lo + man > _M64:  # wider approximation
        product = man * pow_lo
        y_hi, y_lo = product >> 64, product & _M64
        merged_hi, merged_lo = x_hi, (x_lo + y_hi) & _M64
        if merged_lo < x_lo:
            merged_hi += 1
        if merged_hi & 0x1FF == 0x1FF and merged_lo == _M64 and y_lo + man > _M64:
            return None
        x_hi, x_lo = merged_hi, merged_lo
    msb = x_hi >> 63
    mantissa = x_hi >> (msb + 9)
    ret_exp2 -= 1 ^ msb
    if x_lo == 0 and x_hi & 0x1FF == 0 and mantissa & 3 == 1:  # half-way ambiguity
        return None
    mantissa += mantissa & 1
    mantissa >>= 1
    if mantissa >> 53:
        mantissa >>= 1
        ret_exp2 += 1
    if not 1 <= ret_exp2 <= 0x7FE:  # subnormal, or overflow: left to the slow path
        return None
    return _bits_to_float(ret_exp2 << 52 | mantissa & ((1 << 52) - 1) | neg << 63)


def _round_decimal(neg: bool, digits: str, exp10: int) -> float | None:
    """The float64 nearest int(digits) * 10**exp10 (ties to even); None beyond the float64 range.

    Python's int/int division and int->float conversion round correctly, subnormals included.
    """
    digits = digits.lstrip("0")
    if not digits:
        return -0.0 if neg else 0.0
    top = len(digits) + exp10  # the value lies in [10**(top-1), 10**top)
    if top > 310:
        return None
    if top < -330:
        return -0.0 if neg else 0.0
    try:
        value = int(digits) * 10**exp10 / 1 if exp10 >= 0 else int(digits) / 10**-exp10
    except OverflowError:
        return None
    return -value if neg else value


def _decimal_slow_path(s: str) -> float | None:
    """Go's decimal.set + floatBits: the exact decimal algorithm, with its 800-digit buffer.

    Up to 800 significant digits are kept; a non-zero digit beyond them only sets trunc (a sticky digit for
    rounding). The decimal point is placed from the number of *kept* digits, so integer digits beyond the
    800th are lost: "1" + 800 zeros + "e-800" gives 0.1 in Go (when this path is reached).
    """
    i = 1 if s[0] in "+-" else 0
    digits: list[str] = []
    dp, trunc, sawdot = 0, False, False
    while i < len(s):
        c = s[i]
        if c == ".":
            sawdot, dp = True, len(digits)
        elif _is_digit(c):
            if c == "0" and not digits:
                dp -= 1
            elif len(digits) < 800:
                digits.append(c)
            elif c != "0":
                trunc = True
        elif c != "_":
            break
        i += 1
    if not sawdot:
        dp = len(digits)
    if i < len(s):  # the exponent (readFloat has validated it)
        exponent = _read_exponent(s, i + 1)
        assert exponent is not None
        dp += exponent[0]
    if not digits:
        return -0.0 if s[0] == "-" else 0.0
    if trunc:
        digits.append("1")
    return _round_decimal(s[0] == "-", "".join(digits), dp - len(digits))


def parse_float(s: str) -> float:
    """strconv.ParseFloat(s, 64).

    Decimal ("1.5", ".5", "5.", "1e-3") and hexadecimal ("0x1.8p3"; the p exponent is required) forms, an
    optional sign, underscores only between digits or right after a 0x prefix (``underscoreOK``: "1_000.5" is
    accepted), and inf/infinity (signed or not) and nan (unsigned) in any case. No spaces anywhere. Results
    beyond the float64 range raise "value out of range"; results too small for it quietly become 0.0 or -0.0.
    """
    special = _special(s)
    if special is not None:
        if special[1] == len(s):
            return special[0]
        raise _num_error("ParseFloat", s, "invalid syntax")
    parsed = _read_float(s)
    if parsed is None or parsed[5] != len(s):
        raise _num_error("ParseFloat", s, "invalid syntax")
    mantissa, exp, neg, trunc, hexa, _ = parsed
    if hexa:
        value = _atof_hex(mantissa, exp, neg, trunc)
    else:
        value = None if trunc else _atof64_exact(mantissa, exp, neg)
        if value is None:
            value = _eisel_lemire64(mantissa, exp, neg)
            # With dropped digits the result must not depend on them: compare with the next mantissa up.
            if value is not None and trunc and _eisel_lemire64(mantissa + 1, exp, neg) != value:
                value = None
            if value is None:
                value = _decimal_slow_path(s)
    if value is None:
        raise _num_error("ParseFloat", s, "value out of range")
    return value


# --- time.ParseDuration ---------------------------------------------------------------------------------------

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µs, MICRO SIGN
    "\u03bcs": 1_000,  # μs, GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NS_LIMIT = 1 << 63


def _duration_error(message: str, orig: str) -> GoParseError:
    return GoParseError(f"time: {message} {_time_quote(orig)}")


def parse_duration_ns(s: str) -> int:
    """time.ParseDuration, in integer nanoseconds.

    A possibly signed sequence of decimal numbers, each with an optional fraction and a unit (ns, us, µs, μs,
    ms, s, m, h), e.g. "1h30m", "-1.5h", ".5s", "1.s"; "0" alone (or "+0", "-0") needs no unit. The total
    must fit an int64 of nanoseconds. Fractions are converted with Go's float64 arithmetic, so
    "0.3333333333333333333h" gives the very nanosecond count Go gives.
    """
    orig = s
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise _duration_error("invalid duration", orig)
    total = 0
    while s:
        if not (s[0] == "." or _is_digit(s[0])):
            raise _duration_error("invalid duration", orig)
        i, v = 0, 0
        while i < len(s) and _is_digit(s[i]):
            if v > _NS_LIMIT // 10:
                raise _duration_error("invalid duration", orig)
            v = v * 10 + ord(s[i]) - 48
            if v > _NS_LIMIT:
                raise _duration_error("invalid duration", orig)
            i += 1
        pre, s = i > 0, s[i:]
        post, f, scale = False, 0, 1.0
        if s and s[0] == ".":
            s = s[1:]
            i, overflow = 0, False
            while i < len(s) and _is_digit(s[i]):
                if not overflow:
                    y = f * 10 + ord(s[i]) - 48
                    if f > (_NS_LIMIT - 1) // 10 or y > _NS_LIMIT:
                        overflow = True  # further digits are read but no longer add precision
                    else:
                        f, scale = y, scale * 10.0
                i += 1
            post, s = i > 0, s[i:]
        if not pre and not post:
            raise _duration_error("invalid duration", orig)
        i = 0
        while i < len(s) and not (s[i] == "." or _is_digit(s[i])):
            i += 1
        if i == 0:
            raise _duration_error("missing unit in duration", orig)
        unit_name, s = s[:i], s[i:]
        unit = _UNIT_NS.get(unit_name)
        if unit is None:
            raise _duration_error(f"unknown unit {_time_quote(unit_name)} in duration", orig)
        if v > _NS_LIMIT // unit:
            raise _duration_error("invalid duration", orig)
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > _NS_LIMIT:
                raise _duration_error("invalid duration", orig)
        # Go adds in uint64 and only then checks, so 2**63 + 2**63 wraps to 0 and passes.
        total = (total + v) % _UINT64
        if total > _NS_LIMIT:
            raise _duration_error("invalid duration", orig)
    if neg:
        return -total
    if total > _INT64_MAX:
        raise _duration_error("invalid duration", orig)
    return total


def parse_duration(s: str) -> float:
    """time.ParseDuration, in seconds (the float nearest to the exact nanosecond count)."""
    return parse_duration_ns(s) / 1_000_000_000


# --- resource.ParseQuantity -----------------------------------------------------------------------------------

_SPLIT_RE = "^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$"
_ERR_FORMAT = "quantities must match the regular expression '" + _SPLIT_RE + "'"
_ERR_NUMERIC = "unable to parse numeric part of quantity"
_ERR_SUFFIX = "unable to parse quantity's suffix"
_SUFFIX_CHARS = "eEinumkKMGTP"
_BINARY, _DECIMAL_SI, _DECIMAL_EXPONENT = "BinarySI", "DecimalSI", "DecimalExponent"
_SUFFIXES = {
    "": (10, 0, _DECIMAL_SI),
    "n": (10, -9, _DECIMAL_SI),
    "u": (10, -6, _DECIMAL_SI),
    "m": (10, -3, _DECIMAL_SI),
    "k": (10, 3, _DECIMAL_SI),
    "M": (10, 6, _DECIMAL_SI),
    "G": (10, 9, _DECIMAL_SI),
    "T": (10, 12, _DECIMAL_SI),
    "P": (10, 15, _DECIMAL_SI),
    "E": (10, 18, _DECIMAL_SI),
    "Ki": (2, 10, _BINARY),
    "Mi": (2, 20, _BINARY),
    "Gi": (2, 30, _BINARY),
    "Ti": (2, 40, _BINARY),
    "Pi": (2, 50, _BINARY),
    "Ei": (2, 60, _BINARY),
}
# Exact decimal arithmetic: no rounding, no exponent limit (only the round-up to 1e-9 rounds, explicitly).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
_NANO = Decimal("1E-9")


def _scan_quantity(s: str) -> tuple[bool, str, str, str, str]:
    """parseQuantityString: (positive, value, num, denom, suffix); num has its leading zeros removed."""
    end = len(s)
    positive = not s.startswith("-")
    pos = 1 if s[:1] in ("+", "-") else 0
    while pos < end and s[pos] == "0":
        pos += 1
    if pos >= end:
        return positive, "0", "0", "", ""
    i = pos
    while i < end and _is_digit(s[i]):
        i += 1
    if i >= end:
        return positive, s, s[pos:], "", ""
    num, pos = s[pos:i] or "0", i
    denom = ""
    if s[pos] == ".":  # "1." and "." are accepted (an empty denominator)
        pos += 1
        i = pos
        while i < end and _is_digit(s[i]):
            i += 1
        if i >= end:
            return positive, s, num, s[pos:], ""
        denom, pos = s[pos:i], i
    value = s[:pos]
    suffix_start = i = pos
    while i < end and s[i] in _SUFFIX_CHARS:
        i += 1
    if i < end and s[i] in "+-":
        i += 1
    while i < end and _is_digit(s[i]):
        i += 1
    if i < end:
        raise GoParseError(_ERR_FORMAT)
    return positive, value, num, denom, s[suffix_start:]


def parse_quantity(s: str) -> Decimal:
    """resource.ParseQuantity, as the exact value of the Quantity Go builds (a Decimal).

    ``[+-]digits[.digits]`` followed by one suffix: Ki Mi Gi Ti Pi Ei (powers of 2), n u m k M G T P E
    (powers of 10), or an exponent e<int>/E<int>. As in Go: non-zero values are rounded away from zero to a
    multiple of 1e-9 ("0.1n" is 1e-9); binary-suffixed values are capped at 2**63-1 in magnitude, decimal ones
    are not; an exponent is taken modulo 2**32 (as an int32); "1." is 1; and a few odd strings are zero ("+",
    "-", ".", "k", "e5", "Ki").
    """
    if s == "":
        raise GoParseError(_ERR_FORMAT)
    if s == "0":
        return Decimal(0)
    positive, value, num, denom, suffix = _scan_quantity(s)
    if suffix in _SUFFIXES:
        base, exponent, fmt = _SUFFIXES[suffix]
    elif len(suffix) > 1 and suffix[0] in "eE":
        try:
            exponent = _int32(parse_int(suffix[1:], 64))
        except GoParseError:
            raise GoParseError(_ERR_SUFFIX) from None
        base, fmt = 10, _DECIMAL_EXPONENT
    else:
        raise GoParseError(_ERR_SUFFIX)

    # Fast path (int64Amount): the value is kept exactly, unscaled integer and power-of-ten scale.
    mantissa, scale = 1, exponent
    if fmt != _BINARY:
        precision = 18 - (len(num) + len(denom))
    elif not denom:
        mantissa, scale = 1 << exponent, 0
        precision = 15 - len(num) - exponent * 3 // 10 - 1
    else:
        precision = -1
    if precision >= 0:
        scale = _int32(scale - len(denom))
        if scale >= -9:
            result = int(num + denom) * mantissa
            if result <= _INT64_MAX:
                sign = "-" if not positive and result else ""
                return Decimal(f"{sign}{result}E{scale}")

    # Slow path (inf.Dec). Go rounds by multiplying out 10**|scale|, so for exponents beyond about a million it
    # runs for ages (and at 2**31 its int32 scale arithmetic breaks down); here the value stays symbolic.
    sign_end = 1 if value[:1] in ("+", "-") else 0
    int_part, _, frac_part = value[sign_end:].partition(".")
    if not (int_part + frac_part):
        raise GoParseError(_ERR_NUMERIC)
    unscaled = Decimal(int_part + frac_part)
    if base == 10:
        amount = Decimal(f"{unscaled}E{-_int32(len(frac_part) + _int32(-exponent))}")
    else:
        amount = _EXACT.multiply(Decimal(f"{unscaled}E{-len(frac_part)}"), Decimal(1 << exponent))
    if amount and amount.as_tuple().exponent < -9:
        amount = amount.quantize(_NANO, rounding=ROUND_UP, context=_EXACT)  # away from zero
    if fmt == _BINARY and amount > _INT64_MAX:
        amount = Decimal(_INT64_MAX)
    return amount.copy_negate() if not positive and amount else amount


# --- k8s.io/apimachinery/pkg/util/validation ------------------------------------------------------------------

_QNAME_CHAR = "[A-Za-z0-9]"
_QNAME_EXT_CHAR = "[-A-Za-z0-9_.]"
_QUALIFIED_NAME_FMT = f"({_QNAME_CHAR}{_QNAME_EXT_CHAR}*)?{_QNAME_CHAR}"
_QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_ERR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)


# fullmatch is Go's "^...$" (Python's "$" would also match before a final newline); the classes are ASCII.
_qualified_name = re.compile(_QUALIFIED_NAME_FMT).fullmatch
_label_value = re.compile(_LABEL_VALUE_FMT).fullmatch
_dns1123_label = re.compile(_DNS1123_LABEL_FMT).fullmatch
_dns1123_subdomain = re.compile(_DNS1123_SUBDOMAIN_FMT).fullmatch


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    """validation.RegexError, with its doubled space before each " or "."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    return msg + " (e.g. " + " or ".join(f"'{e}', " for e in examples) + f"regex used for validation is '{fmt}')"


_QUALIFIED_NAME_REGEX_ERROR = _regex_error(_QUALIFIED_NAME_ERR, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")


def is_dns1123_subdomain(s: str) -> list[str]:
    """validation.IsDNS1123Subdomain: [] when valid, else Go's messages."""
    errs = []
    if _byte_len(s) > 253:
        errs.append(_max_len_error(253))
    if not _dns1123_subdomain(s):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1123_label(s: str) -> list[str]:
    """validation.IsDNS1123Label: [] when valid, else Go's messages."""
    errs = []
    if _byte_len(s) > 63:
        errs.append(_max_len_error(63))
    if not _dns1123_label(s):
        if _dns1123_subdomain(s):
            errs.append("must not contain dots")
        else:
            errs.append(_regex_error(_DNS1123_LABEL_ERR, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_qualified_name(s: str) -> list[str]:
    """validation.IsQualifiedName (label keys): ``[dns-subdomain/]name``, name at most 63 bytes."""
    errs: list[str] = []
    parts = s.split("/")
    if len(parts) > 2:
        return [
            f"a qualified name {_QUALIFIED_NAME_REGEX_ERROR} with an optional DNS subdomain prefix and '/'"
            " (e.g. 'example.com/MyName')"
        ]
    name = parts[-1]
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    if not name:
        errs.append("name part must be non-empty")
    elif _byte_len(name) > 63:
        errs.append("name part " + _max_len_error(63))
    if not _qualified_name(name):
        errs.append("name part " + _QUALIFIED_NAME_REGEX_ERROR)
    return errs


def is_valid_label_value(s: str) -> list[str]:
    """validation.IsValidLabelValue: empty, or at most 63 bytes of [-A-Za-z0-9_.] starting/ending alphanumeric."""
    errs = []
    if _byte_len(s) > 63:
        errs.append(_max_len_error(63))
    if not _label_value(s):
        errs.append(_regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def valid_label_selector_map(d: Mapping[str, str]) -> list[str]:
    """What labels.ValidatedSelectorFromSet refuses: one message per bad entry, in key order ([] = valid).

    Each message is the error Go returns for that entry (NewRequirement's key and value errors). Go stops at
    the first bad entry of its random map order, so its error is one of these.
    """
    out = []
    for key in sorted(d):
        errs = []
        if key_errs := is_qualified_name(key):
            errs.append(f"key: Invalid value: {_quote(key)}: " + "; ".join(key_errs))
        if value_errs := is_valid_label_value(d[key]):
            errs.append(f"values[0][{key}]: Invalid value: {_quote(d[key])}: " + "; ".join(value_errs))
        if errs:
            out.append(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
    return out
