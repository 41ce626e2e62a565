"""knfleet.desired.gostrconv against Go's own answers.

Every expected value and message below was produced by the Go functions themselves (Go 1.26.8 and Go 1.23.4 agree;
k8s.io/apimachinery v0.31.4, as in Knative Serving 1.17), by a throwaway harness that is not part of the repository.
The harness compared the module with Go on about 600,000 generated inputs; these tables are a representative sample
that runs without Go.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from knfleet.desired import gostrconv
from knfleet.desired.gostrconv import GoParseError


class Refused(str):
    """Go refuses the input with exactly this error message."""


class RefusedWith(str):
    """Go refuses the input; its message (which quotes a very long input) contains this text."""


def check(call, expected, convert=lambda value: value):
    if isinstance(expected, (Refused, RefusedWith)):
        with pytest.raises(GoParseError) as err:
            call()
        if isinstance(expected, Refused):
            assert str(err.value) == expected
        else:
            assert expected in str(err.value)
    else:
        assert convert(call()) == expected


def float_hex(value: float) -> str:
    return "nan" if value != value else float.hex(value)


QUANTITY_FORMAT = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
QUANTITY_SUFFIX = "unable to parse quantity's suffix"
QUANTITY_NUMERIC = "unable to parse numeric part of quantity"
SUBDOMAIN_REGEX = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_REGEX = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
QNAME_REGEX = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
    "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE_REGEX = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
QNAME_SLASHES = (
    "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
    "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
    "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
)

BOOL_CASES = [
    ("1", True),
    ("t", True),
    ("T", True),
    ("true", True),
    ("TRUE", True),
    ("True", True),
    ("0", False),
    ("f", False),
    ("F", False),
    ("false", False),
    ("FALSE", False),
    ("False", False),
    ("tRUE", Refused('strconv.ParseBool: parsing "tRUE": invalid syntax')),
    ("TrUe", Refused('strconv.ParseBool: parsing "TrUe": invalid syntax')),
    ("yes", Refused('strconv.ParseBool: parsing "yes": invalid syntax')),
    ("on", Refused('strconv.ParseBool: parsing "on": invalid syntax')),
    ("y", Refused('strconv.ParseBool: parsing "y": invalid syntax')),
    ("", Refused('strconv.ParseBool: parsing "": invalid syntax')),
    (" true", Refused('strconv.ParseBool: parsing " true": invalid syntax')),
    ("true ", Refused('strconv.ParseBool: parsing "true ": invalid syntax')),
    ("2", Refused('strconv.ParseBool: parsing "2": invalid syntax')),
    ("01", Refused('strconv.ParseBool: parsing "01": invalid syntax')),
    ("-1", Refused('strconv.ParseBool: parsing "-1": invalid syntax')),
    ("+1", Refused('strconv.ParseBool: parsing "+1": invalid syntax')),
    ("\u0131", Refused('strconv.ParseBool: parsing "ı": invalid syntax')),
]

INT_CASES = [
    ("0", 64, 0),
    ("-0", 64, 0),
    ("+0", 64, 0),
    ("123", 64, 123),
    ("+123", 64, 123),
    ("-123", 64, -123),
    ("007", 64, 7),
    ("-007", 64, -7),
    ("9223372036854775807", 64, 9223372036854775807),
    ("9223372036854775808", 64, Refused('strconv.ParseInt: parsing "9223372036854775808": value out of range')),
    ("-9223372036854775808", 64, -9223372036854775808),
    ("-9223372036854775809", 64, Refused('strconv.ParseInt: parsing "-9223372036854775809": value out of range')),
    ("18446744073709551616", 64, Refused('strconv.ParseInt: parsing "18446744073709551616": value out of range')),
    ("99999999999999999999", 64, Refused('strconv.ParseInt: parsing "99999999999999999999": value out of range')),
    ("99999999999999999999x", 64, Refused('strconv.ParseInt: parsing "99999999999999999999x": value out of range')),
    ("-99999999999999999999x", 64, Refused('strconv.ParseInt: parsing "-99999999999999999999x": value out of range')),
    ("1_000", 64, Refused('strconv.ParseInt: parsing "1_000": invalid syntax')),
    ("0x10", 64, Refused('strconv.ParseInt: parsing "0x10": invalid syntax')),
    ("0b1", 64, Refused('strconv.ParseInt: parsing "0b1": invalid syntax')),
    ("0o7", 64, Refused('strconv.ParseInt: parsing "0o7": invalid syntax')),
    ("1e3", 64, Refused('strconv.ParseInt: parsing "1e3": invalid syntax')),
    ("1.0", 64, Refused('strconv.ParseInt: parsing "1.0": invalid syntax')),
    ("1,000", 64, Refused('strconv.ParseInt: parsing "1,000": invalid syntax')),
    (" 1", 64, Refused('strconv.ParseInt: parsing " 1": invalid syntax')),
    ("1 ", 64, Refused('strconv.ParseInt: parsing "1 ": invalid syntax')),
    ("\t1", 64, Refused('strconv.ParseInt: parsing "\\t1": invalid syntax')),
    ("1\n", 64, Refused('strconv.ParseInt: parsing "1\\n": invalid syntax')),
    ("", 64, Refused('strconv.ParseInt: parsing "": invalid syntax')),
    ("+", 64, Refused('strconv.ParseInt: parsing "+": invalid syntax')),
    ("-", 64, Refused('strconv.ParseInt: parsing "-": invalid syntax')),
    ("--1", 64, Refused('strconv.ParseInt: parsing "--1": invalid syntax')),
    ("+-1", 64, Refused('strconv.ParseInt: parsing "+-1": invalid syntax')),
    ("1-", 64, Refused('strconv.ParseInt: parsing "1-": invalid syntax')),
    ("\u0661", 64, Refused('strconv.ParseInt: parsing "١": invalid syntax')),
    ("\uff11", 64, Refused('strconv.ParseInt: parsing "１": invalid syntax')),
    ("\xb2", 64, Refused('strconv.ParseInt: parsing "²": invalid syntax')),
    ("x", 64, Refused('strconv.ParseInt: parsing "x": invalid syntax')),
    ("abc", 64, Refused('strconv.ParseInt: parsing "abc": invalid syntax')),
    ("0000000000000000000000000000000000009", 64, 9),
    ("2147483647", 32, 2147483647),
    ("2147483648", 32, Refused('strconv.ParseInt: parsing "2147483648": value out of range')),
    ("-2147483648", 32, -2147483648),
    ("-2147483649", 32, Refused('strconv.ParseInt: parsing "-2147483649": value out of range')),
    ("4294967296", 32, Refused('strconv.ParseInt: parsing "4294967296": value out of range')),
    ("32767", 16, 32767),
    ("32768", 16, Refused('strconv.ParseInt: parsing "32768": value out of range')),
    ("-32768", 16, -32768),
    ("-32769", 16, Refused('strconv.ParseInt: parsing "-32769": value out of range')),
    ("65536", 16, Refused('strconv.ParseInt: parsing "65536": value out of range')),
    ("70000x", 16, Refused('strconv.ParseInt: parsing "70000x": value out of range')),
    ("40000x", 16, Refused('strconv.ParseInt: parsing "40000x": invalid syntax')),
    ("127", 8, 127),
    ("128", 8, Refused('strconv.ParseInt: parsing "128": value out of range')),
    ("-128", 8, -128),
    ("-129", 8, Refused('strconv.ParseInt: parsing "-129": value out of range')),
    ("0", 1, 0),
    ("1", 1, Refused('strconv.ParseInt: parsing "1": value out of range')),
    ("-1", 1, -1),
    ("2", 1, Refused('strconv.ParseInt: parsing "2": value out of range')),
    ("-2", 1, -1),
    ("-5", 1, -1),
    ("-99999999999999999999x", 1, -1),
    ("-x", 1, Refused('strconv.ParseInt: parsing "-x": invalid syntax')),
    ("9223372036854775807", 0, 9223372036854775807),
    ("9223372036854775808", 0, Refused('strconv.ParseInt: parsing "9223372036854775808": value out of range')),
    ("-9223372036854775808", 0, -9223372036854775808),
    ("1", 65, Refused('strconv.ParseInt: parsing "1": invalid bit size 65')),
    ("", 65, Refused('strconv.ParseInt: parsing "": invalid syntax')),
    ("1", -1, Refused('strconv.ParseInt: parsing "1": invalid bit size -1')),
    ("x", 100, Refused('strconv.ParseInt: parsing "x": invalid bit size 100')),
]

ATOI_CASES = [
    ("0", 0),
    ("42", 42),
    ("-42", -42),
    ("+42", 42),
    ("007", 7),
    ("9223372036854775807", 9223372036854775807),
    ("9223372036854775808", Refused('strconv.Atoi: parsing "9223372036854775808": value out of range')),
    ("-9223372036854775808", -9223372036854775808),
    ("-9223372036854775809", Refused('strconv.Atoi: parsing "-9223372036854775809": value out of range')),
    ("", Refused('strconv.Atoi: parsing "": invalid syntax')),
    ("+", Refused('strconv.Atoi: parsing "+": invalid syntax')),
    ("-", Refused('strconv.Atoi: parsing "-": invalid syntax')),
    (" 42", Refused('strconv.Atoi: parsing " 42": invalid syntax')),
    ("42 ", Refused('strconv.Atoi: parsing "42 ": invalid syntax')),
    ("4_2", Refused('strconv.Atoi: parsing "4_2": invalid syntax')),
    ("0x2a", Refused('strconv.Atoi: parsing "0x2a": invalid syntax')),
    ("4.2", Refused('strconv.Atoi: parsing "4.2": invalid syntax')),
    ("4e1", Refused('strconv.Atoi: parsing "4e1": invalid syntax')),
    ("999999999999999999999x", Refused('strconv.Atoi: parsing "999999999999999999999x": value out of range')),
    ("999999999999999999", 999999999999999999),
    ("\u0661\u0662", Refused('strconv.Atoi: parsing "١٢": invalid syntax')),
]

FLOAT_CASES = [
    ("0", "0x0.0p+0"),
    ("-0", "-0x0.0p+0"),
    ("+0", "0x0.0p+0"),
    ("0.0", "0x0.0p+0"),
    ("-0.0", "-0x0.0p+0"),
    ("00", "0x0.0p+0"),
    ("1", "0x1.0000000000000p+0"),
    ("-1", "-0x1.0000000000000p+0"),
    ("+1", "0x1.0000000000000p+0"),
    ("1.", "0x1.0000000000000p+0"),
    (".5", "0x1.0000000000000p-1"),
    ("-.5", "-0x1.0000000000000p-1"),
    ("+.5", "0x1.0000000000000p-1"),
    ("5.", "0x1.4000000000000p+2"),
    (".", Refused('strconv.ParseFloat: parsing ".": invalid syntax')),
    ("-.", Refused('strconv.ParseFloat: parsing "-.": invalid syntax')),
    ("+.", Refused('strconv.ParseFloat: parsing "+.": invalid syntax')),
    ("", Refused('strconv.ParseFloat: parsing "": invalid syntax')),
    ("-", Refused('strconv.ParseFloat: parsing "-": invalid syntax')),
    ("+", Refused('strconv.ParseFloat: parsing "+": invalid syntax')),
    ("1.5", "0x1.8000000000000p+0"),
    ("3.14159", "0x1.921f9f01b866ep+1"),
    ("0.1", "0x1.999999999999ap-4"),
    ("0.2", "0x1.999999999999ap-3"),
    ("0.3", "0x1.3333333333333p-2"),
    ("123.456e-7", "0x1.9e3fe580f5494p-17"),
    ("1e3", "0x1.f400000000000p+9"),
    ("1E3", "0x1.f400000000000p+9"),
    ("1e+3", "0x1.f400000000000p+9"),
    ("1e-3", "0x1.0624dd2f1a9fcp-10"),
    ("1e03", "0x1.f400000000000p+9"),
    ("1e", Refused('strconv.ParseFloat: parsing "1e": invalid syntax')),
    ("1e+", Refused('strconv.ParseFloat: parsing "1e+": invalid syntax')),
    ("1e-", Refused('strconv.ParseFloat: parsing "1e-": invalid syntax')),
    ("e1", Refused('strconv.ParseFloat: parsing "e1": invalid syntax')),
    (".e1", Refused('strconv.ParseFloat: parsing ".e1": invalid syntax')),
    ("1e1.5", Refused('strconv.ParseFloat: parsing "1e1.5": invalid syntax')),
    ("1.5.5", Refused('strconv.ParseFloat: parsing "1.5.5": invalid syntax')),
    ("1..5", Refused('strconv.ParseFloat: parsing "1..5": invalid syntax')),
    ("1ee1", Refused('strconv.ParseFloat: parsing "1ee1": invalid syntax')),
    ("1p1", Refused('strconv.ParseFloat: parsing "1p1": invalid syntax')),
    ("1d", Refused('strconv.ParseFloat: parsing "1d": invalid syntax')),
    ("1f", Refused('strconv.ParseFloat: parsing "1f": invalid syntax')),
    ("1_0", "0x1.4000000000000p+3"),
    ("1_000", "0x1.f400000000000p+9"),
    ("1_000.5", "0x1.f440000000000p+9"),
    ("1_000_000e1_0", "0x1.1c37937e08000p+53"),
    ("1__0", Refused('strconv.ParseFloat: parsing "1__0": invalid syntax')),
    ("_1", Refused('strconv.ParseFloat: parsing "_1": invalid syntax')),
    ("1_", Refused('strconv.ParseFloat: parsing "1_": invalid syntax')),
    ("1_.5", Refused('strconv.ParseFloat: parsing "1_.5": invalid syntax')),
    ("1._5", Refused('strconv.ParseFloat: parsing "1._5": invalid syntax')),
    ("1.5_", Refused('strconv.ParseFloat: parsing "1.5_": invalid syntax')),
    ("1_e5", Refused('strconv.ParseFloat: parsing "1_e5": invalid syntax')),
    ("1e_5", Refused('strconv.ParseFloat: parsing "1e_5": invalid syntax')),
    ("1e5_", Refused('strconv.ParseFloat: parsing "1e5_": invalid syntax')),
    ("+_1", Refused('strconv.ParseFloat: parsing "+_1": invalid syntax')),
    ("-1_0", "-0x1.4000000000000p+3"),
    ("0_1", "0x1.0000000000000p+0"),
    ("0_0.5", "0x1.0000000000000p-1"),
    ("0x_1p0", "0x1.0000000000000p+0"),
    ("0x1_0p0", "0x1.0000000000000p+4"),
    ("0x1_p0", Refused('strconv.ParseFloat: parsing "0x1_p0": invalid syntax')),
    ("0x1p_0", Refused('strconv.ParseFloat: parsing "0x1p_0": invalid syntax')),
    ("0x1p1_0", "0x1.0000000000000p+10"),
    ("0_x1p0", Refused('strconv.ParseFloat: parsing "0_x1p0": invalid syntax')),
    ("0x__1p0", Refused('strconv.ParseFloat: parsing "0x__1p0": invalid syntax')),
    ("0x1p0", "0x1.0000000000000p+0"),
    ("0x1P0", "0x1.0000000000000p+0"),
    ("0X1p-2", "0x1.0000000000000p-2"),
    ("0x1.8p1", "0x1.8000000000000p+1"),
    ("0x.8p1", "0x1.0000000000000p+0"),
    ("0x1.p1", "0x1.0000000000000p+1"),
    ("-0x1p0", "-0x1.0000000000000p+0"),
    ("+0x1p0", "0x1.0000000000000p+0"),
    ("0x1", Refused('strconv.ParseFloat: parsing "0x1": invalid syntax')),
    ("0x1.8", Refused('strconv.ParseFloat: parsing "0x1.8": invalid syntax')),
    ("0x1e5", Refused('strconv.ParseFloat: parsing "0x1e5": invalid syntax')),
    ("0x1p", Refused('strconv.ParseFloat: parsing "0x1p": invalid syntax')),
    ("0x1p+", Refused('strconv.ParseFloat: parsing "0x1p+": invalid syntax')),
    ("0xp0", Refused('strconv.ParseFloat: parsing "0xp0": invalid syntax')),
    ("0x.p1", Refused('strconv.ParseFloat: parsing "0x.p1": invalid syntax')),
    ("0x", Refused('strconv.ParseFloat: parsing "0x": invalid syntax')),
    ("0x0p0", "0x0.0p+0"),
    ("-0x0p0", "-0x0.0p+0"),
    ("0xABCDEFp0", "0x1.579bde0000000p+23"),
    ("0xabcdef.8p-4", "0x1.579bdf0000000p+19"),
    ("0xg1p0", Refused('strconv.ParseFloat: parsing "0xg1p0": invalid syntax')),
    ("0x1p1023", "0x1.0000000000000p+1023"),
    ("0x1.fffffffffffffp1023", "0x1.fffffffffffffp+1023"),
    ("0x1.fffffffffffff7p1023", "0x1.fffffffffffffp+1023"),
    ("0x1.fffffffffffff8p1023", Refused('strconv.ParseFloat: parsing "0x1.fffffffffffff8p1023": value out of range')),
    ("0x1p1024", Refused('strconv.ParseFloat: parsing "0x1p1024": value out of range')),
    ("0x1p-1022", "0x1.0000000000000p-1022"),
    ("0x1p-1074", "0x0.0000000000001p-1022"),
    ("0x1p-1075", "0x0.0p+0"),
    ("0x1.0000000000001p-1075", "0x0.0000000000001p-1022"),
    ("0x1.8p-1075", "0x0.0000000000001p-1022"),
    ("0x1p-1076", "0x0.0p+0"),
    ("0x1.00000000000008p0", "0x1.0000000000000p+0"),
    ("0x1.000000000000080000000001p0", "0x1.0000000000001p+0"),
    ("0x1.00000000000018p0", "0x1.0000000000002p+0"),
    ("0x1p99999", Refused('strconv.ParseFloat: parsing "0x1p99999": value out of range')),
    ("0x1p-99999", "0x0.0p+0"),
    ("inf", "inf"),
    ("Inf", "inf"),
    ("INF", "inf"),
    ("+inf", "inf"),
    ("-inf", "-inf"),
    ("infinity", "inf"),
    ("Infinity", "inf"),
    ("-INFINITY", "-inf"),
    ("+Infinity", "inf"),
    ("nan", "nan"),
    ("NaN", "nan"),
    ("NAN", "nan"),
    ("+nan", Refused('strconv.ParseFloat: parsing "+nan": invalid syntax')),
    ("-nan", Refused('strconv.ParseFloat: parsing "-nan": invalid syntax')),
    ("infin", Refused('strconv.ParseFloat: parsing "infin": invalid syntax')),
    ("infinit", Refused('strconv.ParseFloat: parsing "infinit": invalid syntax')),
    ("infinityy", Refused('strconv.ParseFloat: parsing "infinityy": invalid syntax')),
    ("inf0", Refused('strconv.ParseFloat: parsing "inf0": invalid syntax')),
    ("nan0", Refused('strconv.ParseFloat: parsing "nan0": invalid syntax')),
    ("in", Refused('strconv.ParseFloat: parsing "in": invalid syntax')),
    ("na", Refused('strconv.ParseFloat: parsing "na": invalid syntax')),
    ("++inf", Refused('strconv.ParseFloat: parsing "++inf": invalid syntax')),
    ("+-inf", Refused('strconv.ParseFloat: parsing "+-inf": invalid syntax')),
    (" inf", Refused('strconv.ParseFloat: parsing " inf": invalid syntax')),
    ("1.7976931348623157e308", "0x1.fffffffffffffp+1023"),
    ("1.7976931348623158e308", "0x1.fffffffffffffp+1023"),
    ("1.7976931348623159e308", Refused('strconv.ParseFloat: parsing "1.7976931348623159e308": value out of range')),
    ("-1.7976931348623159e308", Refused('strconv.ParseFloat: parsing "-1.7976931348623159e308": value out of range')),
    ("1e308", "0x1.1ccf385ebc8a0p+1023"),
    ("1e309", Refused('strconv.ParseFloat: parsing "1e309": value out of range')),
    ("-1e309", Refused('strconv.ParseFloat: parsing "-1e309": value out of range')),
    ("1e400", Refused('strconv.ParseFloat: parsing "1e400": value out of range')),
    ("1e99999", Refused('strconv.ParseFloat: parsing "1e99999": value out of range')),
    ("2.2250738585072014e-308", "0x1.0000000000000p-1022"),
    ("2.2250738585072011e-308", "0x0.fffffffffffffp-1022"),
    ("4.9406564584124654e-324", "0x0.0000000000001p-1022"),
    ("5e-324", "0x0.0000000000001p-1022"),
    ("3e-324", "0x0.0000000000001p-1022"),
    ("2.4703282292062328e-324", "0x0.0000000000001p-1022"),
    ("2.4703282292062327e-324", "0x0.0p+0"),
    ("1e-323", "0x0.0000000000002p-1022"),
    ("1e-324", "0x0.0p+0"),
    ("1e-400", "0x0.0p+0"),
    ("-1e-400", "-0x0.0p+0"),
    ("0e999999", "0x0.0p+0"),
    ("0e-999999", "0x0.0p+0"),
    ("1e-99999", "0x0.0p+0"),
    ("9007199254740993", "0x1.0000000000000p+53"),
    ("9007199254740993.0000000000000000001", "0x1.0000000000001p+53"),
    ("9007199254740995", "0x1.0000000000002p+53"),
    ("18014398509481985", "0x1.0000000000000p+54"),
    ("1.00000000000000011102230246251565404236316680908203125", "0x1.0000000000000p+0"),
    ("1.00000000000000011102230246251565404236316680908203124", "0x1.0000000000000p+0"),
    ("1.00000000000000011102230246251565404236316680908203126", "0x1.0000000000001p+0"),
    ("1.00000000000000011102230246251565404236316680908203125" + "0" * 900 + "1", "0x1.0000000000001p+0"),
    ("123456789012345678901234567890", "0x1.8ee90ff6c373ep+96"),
    ("0.000000000000000000000000000001234567890123456789", "0x1.90a3e33c69ac3p-100"),
    ("1" * 5000, RefusedWith("value out of range")),
    ("0." + "0" * 5000 + "1", "0x0.0p+0"),
    ("0." + "0" * 5000 + "1e5001", "0x1.0000000000000p+0"),
    ("0." + "0" * 100000 + "9e100000", "0x0.0p+0"),
    ("0." + "0" * 10005 + "1e10006", "0x1.0000000000000p+0"),
    ("1" + "0" * 400 + "e-400", "0x1.0000000000000p+0"),
    ("1" + "0" * 799 + "e-799", "0x1.0000000000000p+0"),
    ("1" + "0" * 800 + "e-800", "0x1.999999999999ap-4"),
    ("1" + "0" * 800 + ".0e-800", "0x1.999999999999ap-4"),
    ("1" + "0" * 1000 + "e-1000", "0x1.39874ddd8c623p-668"),
    ("1" + "0" * 9000 + "e-9000", "0x0.0p+0"),
    ("3" + "0" * 810 + "e-810", "0x1.07e1fe91b0b70p-35"),
    ("1" + "0" * 800 + "1e-801", "0x1.47ae147ae147bp-7"),
    (" 1", Refused('strconv.ParseFloat: parsing " 1": invalid syntax')),
    ("1 ", Refused('strconv.ParseFloat: parsing "1 ": invalid syntax')),
    ("\t1", Refused('strconv.ParseFloat: parsing "\\t1": invalid syntax')),
    ("1\n", Refused('strconv.ParseFloat: parsing "1\\n": invalid syntax')),
    ("1\xa0", Refused('strconv.ParseFloat: parsing "1\\u00a0": invalid syntax')),
    ("\xa01", Refused('strconv.ParseFloat: parsing "\\u00a01": invalid syntax')),
    ("--1", Refused('strconv.ParseFloat: parsing "--1": invalid syntax')),
    ("+-1", Refused('strconv.ParseFloat: parsing "+-1": invalid syntax')),
    ("-+1", Refused('strconv.ParseFloat: parsing "-+1": invalid syntax')),
    ("1-", Refused('strconv.ParseFloat: parsing "1-": invalid syntax')),
    ("1+", Refused('strconv.ParseFloat: parsing "1+": invalid syntax')),
    ("0b1", Refused('strconv.ParseFloat: parsing "0b1": invalid syntax')),
    ("0o7", Refused('strconv.ParseFloat: parsing "0o7": invalid syntax')),
    ("1,5", Refused('strconv.ParseFloat: parsing "1,5": invalid syntax')),
    ("\u0661", Refused('strconv.ParseFloat: parsing "١": invalid syntax')),
    ("\uff11", Refused('strconv.ParseFloat: parsing "１": invalid syntax')),
    ("\xb2", Refused('strconv.ParseFloat: parsing "²": invalid syntax')),
    ("1x", Refused('strconv.ParseFloat: parsing "1x": invalid syntax')),
    ("x1", Refused('strconv.ParseFloat: parsing "x1": invalid syntax')),
    ("\x00", Refused('strconv.ParseFloat: parsing "\\x00": invalid syntax')),
    ("\xe9", Refused('strconv.ParseFloat: parsing "é": invalid syntax')),
]

DURATION_CASES = [
    ("0", 0),
    ("+0", 0),
    ("-0", 0),
    ("00", Refused('time: missing unit in duration "00"')),
    ("0.0", Refused('time: missing unit in duration "0.0"')),
    ("0s", 0),
    ("-0s", 0),
    ("", Refused('time: invalid duration ""')),
    ("+", Refused('time: invalid duration "+"')),
    ("-", Refused('time: invalid duration "-"')),
    ("s", Refused('time: invalid duration "s"')),
    ("5", Refused('time: missing unit in duration "5"')),
    ("-5", Refused('time: missing unit in duration "-5"')),
    ("1.5", Refused('time: missing unit in duration "1.5"')),
    ("1s", 1000000000),
    ("1ns", 1),
    ("1us", 1000),
    ("1\xb5s", 1000),
    ("1\u03bcs", 1000),
    ("1ms", 1000000),
    ("1m", 60000000000),
    ("1h", 3600000000000),
    ("90s", 90000000000),
    ("1h30m", 5400000000000),
    ("1h30m15s", 5415000000000),
    ("2h45m", 9900000000000),
    ("-1.5h", -5400000000000),
    ("+1.5h", 5400000000000),
    ("1.5h2.5m3.5s4.5ms5.5us6.5ns", 5553504505506),
    ("300ms", 300000000),
    ("1h0m0s", 3600000000000),
    (".5s", 500000000),
    ("1.s", 1000000000),
    ("1.5.5s", Refused('time: missing unit in duration "1.5.5s"')),
    (".s", Refused('time: invalid duration ".s"')),
    ("-.s", Refused('time: invalid duration "-.s"')),
    ("1..5s", Refused('time: missing unit in duration "1..5s"')),
    ("1h1", Refused('time: missing unit in duration "1h1"')),
    ("1s1", Refused('time: missing unit in duration "1s1"')),
    ("1ns1ns", 2),
    ("1h-1m", Refused('time: unknown unit "h-" in duration "1h-1m"')),
    ("1h+1m", Refused('time: unknown unit "h+" in duration "1h+1m"')),
    ("1d", Refused('time: unknown unit "d" in duration "1d"')),
    ("1w", Refused('time: unknown unit "w" in duration "1w"')),
    ("1y", Refused('time: unknown unit "y" in duration "1y"')),
    ("1sec", Refused('time: unknown unit "sec" in duration "1sec"')),
    ("1S", Refused('time: unknown unit "S" in duration "1S"')),
    ("1H", Refused('time: unknown unit "H" in duration "1H"')),
    ("1Ms", Refused('time: unknown unit "Ms" in duration "1Ms"')),
    ("1mS", Refused('time: unknown unit "mS" in duration "1mS"')),
    ("1NS", Refused('time: unknown unit "NS" in duration "1NS"')),
    ("1hr", Refused('time: unknown unit "hr" in duration "1hr"')),
    ("1min", Refused('time: unknown unit "min" in duration "1min"')),
    ("1\xb5", Refused('time: unknown unit "\\xc2\\xb5" in duration "1\\xc2\\xb5"')),
    ("1u", Refused('time: unknown unit "u" in duration "1u"')),
    ("1\u03bc", Refused('time: unknown unit "\\xce\\xbc" in duration "1\\xce\\xbc"')),
    ("1 s", Refused('time: unknown unit " s" in duration "1 s"')),
    (" 1s", Refused('time: invalid duration " 1s"')),
    ("1s ", Refused('time: unknown unit "s " in duration "1s "')),
    ("1s\n", Refused('time: unknown unit "s\\x0a" in duration "1s\\x0a"')),
    ("1h\xa0", Refused('time: unknown unit "h\\xc2\\xa0" in duration "1h\\xc2\\xa0"')),
    ("1e3s", Refused('time: unknown unit "e" in duration "1e3s"')),
    ("1_000s", Refused('time: unknown unit "_" in duration "1_000s"')),
    ("1,5s", Refused('time: unknown unit "," in duration "1,5s"')),
    ("1:30", Refused('time: unknown unit ":" in duration "1:30"')),
    ("\u0663s", Refused('time: invalid duration "\\xd9\\xa3s"')),
    ("1\u0663s", Refused('time: unknown unit "\\xd9\\xa3s" in duration "1\\xd9\\xa3s"')),
    ("\uff11s", Refused('time: invalid duration "\\xef\\xbc\\x91s"')),
    (".1ns", 0),
    (".9ns", 0),
    ("1.9ns", 1),
    ("-1.9ns", -1),
    ("1.000000001s", 1000000001),
    ("1.0000000001s", 1000000000),
    ("0.0000000001s", 0),
    ("1.123456789123456789s", 1123456789),
    ("0.3333333333333333333h", 1200000000000),
    ("1.1h", 3960000000000),
    ("0.1h", 360000000000),
    ("1.7h", 6120000000000),
    (".123456789s", 123456789),
    ("1.0000000000000000000000000001s", 1000000000),
    ("0." + "0" * 400 + "1h", 0),
    ("123456789012345678901.5ns", Refused('time: invalid duration "123456789012345678901.5ns"')),
    ("922337203685477580.8ns", 922337203685477580),
    ("9223372036854775807ns", 9223372036854775807),
    ("9223372036854775808ns", Refused('time: invalid duration "9223372036854775808ns"')),
    ("-9223372036854775808ns", -9223372036854775808),
    ("-9223372036854775809ns", Refused('time: invalid duration "-9223372036854775809ns"')),
    ("9223372036854775807ns1ns", Refused('time: invalid duration "9223372036854775807ns1ns"')),
    ("2562047h47m16.854775807s", 9223372036854775807),
    ("2562047h47m16.854775808s", Refused('time: invalid duration "2562047h47m16.854775808s"')),
    ("-2562047h47m16.854775808s", -9223372036854775808),
    ("-2562047h47m16.854775809s", Refused('time: invalid duration "-2562047h47m16.854775809s"')),
    ("2562047h", 9223369200000000000),
    ("2562048h", Refused('time: invalid duration "2562048h"')),
    ("9223372036s", 9223372036000000000),
    ("9223372037s", Refused('time: invalid duration "9223372037s"')),
    ("153722867m", 9223372020000000000),
    ("153722868m", Refused('time: invalid duration "153722868m"')),
    ("9223372036854775808ns9223372036854775808ns", 0),
    ("-9223372036854775808ns9223372036854775808ns", 0),
    (
        "4611686018427387904ns4611686018427387904ns",
        Refused('time: invalid duration "4611686018427387904ns4611686018427387904ns"'),
    ),
    ("18446744073709551616ns", Refused('time: invalid duration "18446744073709551616ns"')),
    ("99999999999999999999h", Refused('time: invalid duration "99999999999999999999h"')),
]

QUANTITY_CASES = [
    ("0", "0"),
    ("-0", "0"),
    ("+0", "0"),
    ("00", "0"),
    ("0.0", "0.0"),
    ("1", "1"),
    ("-1", "-1"),
    ("+1", "1"),
    ("1.5", "1.5"),
    ("-1.5", "-1.5"),
    (".5", "0.5"),
    ("5.", "5"),
    ("1.", "1"),
    (".", "0"),
    ("+.", "0"),
    ("-.", "0"),
    ("+", "0"),
    ("-", "0"),
    ("", Refused(QUANTITY_FORMAT)),
    ("000000000000000000000000001", "1"),
    ("0000.0000000000000000000001", "0.000000001"),
    ("1n", "0.000000001"),
    ("1u", "0.000001"),
    ("1m", "0.001"),
    ("1k", "1000"),
    ("1M", "1000000"),
    ("1G", "1000000000"),
    ("1T", "1000000000000"),
    ("1P", "1000000000000000"),
    ("1E", "1000000000000000000"),
    ("1Ki", "1024"),
    ("1Mi", "1048576"),
    ("1Gi", "1073741824"),
    ("1Ti", "1099511627776"),
    ("1Pi", "1125899906842624"),
    ("1Ei", "1152921504606846976"),
    ("1.5Gi", "1610612736"),
    ("0.5Ki", "512"),
    ("1.Ki", "1024"),
    (".5Mi", "524288"),
    ("0.0001Ki", "0.1024"),
    ("0.1Ei", "115292150460684697.6"),
    ("100m", "0.1"),
    ("250m", "0.25"),
    ("0.25", "0.25"),
    ("512Mi", "536870912"),
    ("2Gi", "2147483648"),
    ("1.5e3", "1500"),
    ("1K", Refused(QUANTITY_SUFFIX)),
    ("1ki", Refused(QUANTITY_SUFFIX)),
    ("1KI", Refused(QUANTITY_FORMAT)),
    ("1Kii", Refused(QUANTITY_SUFFIX)),
    ("1mi", Refused(QUANTITY_SUFFIX)),
    ("1ei", Refused(QUANTITY_SUFFIX)),
    ("1b", Refused(QUANTITY_FORMAT)),
    ("1KB", Refused(QUANTITY_FORMAT)),
    ("1kb", Refused(QUANTITY_FORMAT)),
    ("1mm", Refused(QUANTITY_SUFFIX)),
    ("1nn", Refused(QUANTITY_SUFFIX)),
    ("1Gi1", Refused(QUANTITY_SUFFIX)),
    ("1e1Ki", Refused(QUANTITY_FORMAT)),
    ("1Ki5", Refused(QUANTITY_SUFFIX)),
    ("1k5", Refused(QUANTITY_SUFFIX)),
    ("1-5", Refused(QUANTITY_SUFFIX)),
    ("1+5", Refused(QUANTITY_SUFFIX)),
    ("1e", Refused(QUANTITY_SUFFIX)),
    ("1E+", Refused(QUANTITY_SUFFIX)),
    ("1e+", Refused(QUANTITY_SUFFIX)),
    ("1e-", Refused(QUANTITY_SUFFIX)),
    ("1ee5", Refused(QUANTITY_SUFFIX)),
    ("1e5e5", Refused(QUANTITY_FORMAT)),
    ("1e5.5", Refused(QUANTITY_FORMAT)),
    ("1e1.5", Refused(QUANTITY_FORMAT)),
    ("1.5.5", Refused(QUANTITY_FORMAT)),
    ("1.5.k", Refused(QUANTITY_FORMAT)),
    ("1 ", Refused(QUANTITY_FORMAT)),
    (" 1", Refused(QUANTITY_FORMAT)),
    ("1 k", Refused(QUANTITY_FORMAT)),
    ("1,5", Refused(QUANTITY_FORMAT)),
    ("1_000", Refused(QUANTITY_FORMAT)),
    ("0x10", Refused(QUANTITY_FORMAT)),
    ("1\xb5", Refused(QUANTITY_FORMAT)),
    ("\u0661", Refused(QUANTITY_FORMAT)),
    ("abc", Refused(QUANTITY_FORMAT)),
    ("1.5Gi ", Refused(QUANTITY_FORMAT)),
    ("k", "0"),
    ("m", "0.000"),
    ("n", "0.000000000"),
    ("Ki", "0"),
    ("Ei", Refused(QUANTITY_NUMERIC)),
    ("+Ei", Refused(QUANTITY_NUMERIC)),
    ("-Ei", Refused(QUANTITY_NUMERIC)),
    (".Ei", Refused(QUANTITY_NUMERIC)),
    ("0Ei", "0"),
    ("e5", "0"),
    ("E5", "0"),
    ("E", "0"),
    ("e", Refused(QUANTITY_SUFFIX)),
    ("e-10", Refused(QUANTITY_NUMERIC)),
    ("-e-10", Refused(QUANTITY_NUMERIC)),
    (".e-10", Refused(QUANTITY_NUMERIC)),
    ("0e-10", "0.0000000000"),
    ("1e3", "1000"),
    ("1E3", "1000"),
    ("1e-3", "0.001"),
    ("1e+3", "1000"),
    ("1e0", "1"),
    ("1e18", "1000000000000000000"),
    ("1e19", "10000000000000000000"),
    ("-1e19", "-10000000000000000000"),
    ("1e100", "1E+100"),
    ("1e-9", "0.000000001"),
    ("1e-10", "0.000000001"),
    ("1.5e-9", "0.000000002"),
    ("1.55e-9", "0.000000002"),
    ("-1.55e-9", "-0.000000002"),
    ("5e-10", "0.000000001"),
    ("123.456e-12", "0.000000001"),
    ("1e00000000000000000000005", "100000"),
    ("1e99999999999999999999", Refused(QUANTITY_SUFFIX)),
    ("1e2147483647", "1E+2147483647"),
    ("1e4294967296", "1"),
    ("1e4294967297", "10"),
    ("1.5e-2147483648", "1.5E+2147483648"),
    ("1e9223372036854775807", "0.1"),
    ("0.1n", "0.000000001"),
    ("0.5n", "0.000000001"),
    ("0.9n", "0.000000001"),
    ("1.1n", "0.000000002"),
    ("-0.1n", "-0.000000001"),
    ("-1.5n", "-0.000000002"),
    ("0.0000000001", "0.000000001"),
    ("0.0000000011", "0.000000002"),
    ("-0.0000000001", "-0.000000001"),
    ("1.0000000001", "1.000000001"),
    ("0.000000000000000000001", "0.000000001"),
    ("123456789.123456789", "123456789.123456789"),
    ("1234567890.1234567891", "1234567890.12345679"),
    ("9223372036854775807", "9223372036854775807"),
    ("9223372036854775808", "9223372036854775808"),
    ("-9223372036854775809", "-9223372036854775809"),
    ("99999999999999999999", "99999999999999999999"),
    ("123456789012345678", "123456789012345678"),
    ("1234567890123456789", "1234567890123456789"),
    ("9223372036854775807Ki", "9223372036854775807"),
    ("7Ei", "8070450532247928832"),
    ("8Ei", "9223372036854775807"),
    ("9Ei", "9223372036854775807"),
    ("16Ei", "9223372036854775807"),
    ("-8Ei", "-9223372036854775807"),
    ("7.99Ei", "9211842821808707338.24"),
    ("7.999999999999999999Ei", "9223372036854775806.847078496"),
    ("8.5Ei", "9223372036854775807"),
    ("9223372036854775806.5Ki", "9223372036854775807"),
    ("100000000000000000000E", "1E+38"),
]

SUBDOMAIN_CASES = [
    ("", [SUBDOMAIN_REGEX]),
    ("a", []),
    ("A", [SUBDOMAIN_REGEX]),
    ("0", []),
    ("-", [SUBDOMAIN_REGEX]),
    (".", [SUBDOMAIN_REGEX]),
    ("_", [SUBDOMAIN_REGEX]),
    ("a-b", []),
    ("a.b", []),
    ("a_b", [SUBDOMAIN_REGEX]),
    ("a..b", [SUBDOMAIN_REGEX]),
    ("a.-b", [SUBDOMAIN_REGEX]),
    ("-a", [SUBDOMAIN_REGEX]),
    ("a-", [SUBDOMAIN_REGEX]),
    (".a", [SUBDOMAIN_REGEX]),
    ("a.", [SUBDOMAIN_REGEX]),
    ("my-name", []),
    ("123-abc", []),
    ("example.com", []),
    ("Example.com", [SUBDOMAIN_REGEX]),
    ("ex ample", [SUBDOMAIN_REGEX]),
    ("a\n", [SUBDOMAIN_REGEX]),
    ("a\nb", [SUBDOMAIN_REGEX]),
    ("\xe9", [SUBDOMAIN_REGEX]),
    ("a\xe9", [SUBDOMAIN_REGEX]),
    ("a/b", [SUBDOMAIN_REGEX]),
    ("a\xa0b", [SUBDOMAIN_REGEX]),
    ("x" * 63, []),
    ("x" * 64, []),
    ("é" * 32, [SUBDOMAIN_REGEX]),
    ("a" * 253, []),
    ("a" * 254, ["must be no more than 253 characters"]),
    (("a" * 63 + ".") * 3 + "a" * 61, []),
    (("a" * 63 + ".") * 3 + "a" * 62, ["must be no more than 253 characters"]),
    ("a" * 64 + ".b", []),
]

LABEL_CASES = [
    ("", [LABEL_REGEX]),
    ("a", []),
    ("A", [LABEL_REGEX]),
    ("0", []),
    ("-", [LABEL_REGEX]),
    (".", [LABEL_REGEX]),
    ("_", [LABEL_REGEX]),
    ("a-b", []),
    ("a.b", ["must not contain dots"]),
    ("a_b", [LABEL_REGEX]),
    ("a..b", [LABEL_REGEX]),
    ("a.-b", [LABEL_REGEX]),
    ("-a", [LABEL_REGEX]),
    ("a-", [LABEL_REGEX]),
    (".a", [LABEL_REGEX]),
    ("a.", [LABEL_REGEX]),
    ("my-name", []),
    ("123-abc", []),
    ("example.com", ["must not contain dots"]),
    ("Example.com", [LABEL_REGEX]),
    ("ex ample", [LABEL_REGEX]),
    ("a\n", [LABEL_REGEX]),
    ("a\nb", [LABEL_REGEX]),
    ("\xe9", [LABEL_REGEX]),
    ("a\xe9", [LABEL_REGEX]),
    ("a/b", [LABEL_REGEX]),
    ("a\xa0b", [LABEL_REGEX]),
    ("x" * 63, []),
    ("x" * 64, ["must be no more than 63 characters"]),
    ("é" * 32, ["must be no more than 63 characters", LABEL_REGEX]),
    ("a" * 253, ["must be no more than 63 characters"]),
    ("a" * 254, ["must be no more than 63 characters"]),
    (("a" * 63 + ".") * 3 + "a" * 61, ["must be no more than 63 characters", "must not contain dots"]),
    (("a" * 63 + ".") * 3 + "a" * 62, ["must be no more than 63 characters", "must not contain dots"]),
    ("a" * 64 + ".b", ["must be no more than 63 characters", "must not contain dots"]),
]

QUALIFIED_NAME_CASES = [
    ("", ["name part must be non-empty", "name part " + QNAME_REGEX]),
    ("a", []),
    ("A", []),
    ("MyName", []),
    ("my.name", []),
    ("123-abc", []),
    ("a_b", []),
    ("_a", ["name part " + QNAME_REGEX]),
    ("a_", ["name part " + QNAME_REGEX]),
    ("-a", ["name part " + QNAME_REGEX]),
    ("a.", ["name part " + QNAME_REGEX]),
    ("a b", ["name part " + QNAME_REGEX]),
    ("\xe9", ["name part " + QNAME_REGEX]),
    ("a/b", []),
    ("/b", ["prefix part must be non-empty"]),
    ("a/", ["name part must be non-empty", "name part " + QNAME_REGEX]),
    ("/", ["prefix part must be non-empty", "name part must be non-empty", "name part " + QNAME_REGEX]),
    ("//", [QNAME_SLASHES]),
    ("a/b/c", [QNAME_SLASHES]),
    ("example.com/MyName", []),
    ("example.com/my.name", []),
    ("EXAMPLE.com/x", ["prefix part " + SUBDOMAIN_REGEX]),
    ("ex_ample.com/x", ["prefix part " + SUBDOMAIN_REGEX]),
    ("-ex.com/x", ["prefix part " + SUBDOMAIN_REGEX]),
    ("ex.com/-x", ["name part " + QNAME_REGEX]),
    ("serving.knative.dev/release", []),
    ("app.kubernetes.io/name", []),
    ("x" * 63, []),
    ("x" * 64, ["name part must be no more than 63 characters"]),
    ("ab/" + "x" * 64, ["name part must be no more than 63 characters"]),
    ("a" * 254 + "/x", ["prefix part must be no more than 253 characters"]),
    (
        "A" * 254 + "/" + "-" * 64,
        [
            "prefix part must be no more than 253 characters",
            "prefix part " + SUBDOMAIN_REGEX,
            "name part must be no more than 63 characters",
            "name part " + QNAME_REGEX,
        ],
    ),
]

LABEL_VALUE_CASES = [
    ("", []),
    ("a", []),
    ("A", []),
    ("0", []),
    ("MyValue", []),
    ("my_value", []),
    ("12345", []),
    ("a-b.c_d", []),
    ("-a", [LABEL_VALUE_REGEX]),
    ("a-", [LABEL_VALUE_REGEX]),
    ("_a", [LABEL_VALUE_REGEX]),
    ("a b", [LABEL_VALUE_REGEX]),
    ("a/b", [LABEL_VALUE_REGEX]),
    ("\xe9", [LABEL_VALUE_REGEX]),
    ("a\n", [LABEL_VALUE_REGEX]),
    ("x" * 63, []),
    ("x" * 64, ["must be no more than 63 characters"]),
    ("-" * 64, ["must be no more than 63 characters", LABEL_VALUE_REGEX]),
]

SELECTOR_CASES = [
    ({}, []),
    ({"app": "web"}, []),
    ({"app": ""}, []),
    ({"serving.knative.dev/service": "hello"}, []),
    ({"app": "a b"}, ['values[0][app]: Invalid value: "a b": ' + LABEL_VALUE_REGEX]),
    ({"a b": "x"}, ['key: Invalid value: "a b": name part ' + QNAME_REGEX]),
    (
        {"a/b/c": "x y"},
        [
            '[key: Invalid value: "a/b/c": '
            + QNAME_SLASHES
            + ', values[0][a/b/c]: Invalid value: "x y": '
            + LABEL_VALUE_REGEX
            + "]"
        ],
    ),
    ({"": "v"}, ['key: Invalid value: "": name part must be non-empty; name part ' + QNAME_REGEX]),
    ({"/x": "v"}, ['key: Invalid value: "/x": prefix part must be non-empty']),
    ({"x/": "v"}, ['key: Invalid value: "x/": name part must be non-empty; name part ' + QNAME_REGEX]),
    ({"team": "-"}, ['values[0][team]: Invalid value: "-": ' + LABEL_VALUE_REGEX]),
    ({"ok": "fine", "bad key": "fine"}, ['key: Invalid value: "bad key": name part ' + QNAME_REGEX]),
    (
        {"b": "-bad", "a": "bad-", "ok": "v"},
        [
            'values[0][a]: Invalid value: "bad-": ' + LABEL_VALUE_REGEX,
            'values[0][b]: Invalid value: "-bad": ' + LABEL_VALUE_REGEX,
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), BOOL_CASES)
def test_parse_bool(text, expected):
    check(lambda: gostrconv.parse_bool(text), expected)


@pytest.mark.parametrize(("text", "bit_size", "expected"), INT_CASES)
def test_parse_int(text, bit_size, expected):
    check(lambda: gostrconv.parse_int(text, bit_size), expected)


@pytest.mark.parametrize(("text", "expected"), ATOI_CASES)
def test_atoi(text, expected):
    check(lambda: gostrconv.atoi(text), expected)


@pytest.mark.parametrize(("text", "expected"), FLOAT_CASES)
def test_parse_float(text, expected):
    """Values as float.hex(), so that they compare bit for bit (-0.0 included)."""
    check(lambda: gostrconv.parse_float(text), expected, float_hex)


@pytest.mark.parametrize(("text", "expected"), DURATION_CASES)
def test_parse_duration(text, expected):
    """Values in integer nanoseconds; parse_duration gives the float nearest to the same count of seconds."""
    check(lambda: gostrconv.parse_duration_ns(text), expected)
    if not isinstance(expected, (Refused, RefusedWith)):
        assert gostrconv.parse_duration(text) == expected / 1_000_000_000


@pytest.mark.parametrize(("text", "expected"), QUANTITY_CASES)
def test_parse_quantity(text, expected):
    """Values as exact decimals (Decimal equality is numeric: Decimal("1E+3") == Decimal("1000"))."""
    check(lambda: gostrconv.parse_quantity(text), expected if isinstance(expected, Refused) else Decimal(expected))


@pytest.mark.parametrize(("text", "expected"), SUBDOMAIN_CASES)
def test_is_dns1123_subdomain(text, expected):
    assert gostrconv.is_dns1123_subdomain(text) == expected


@pytest.mark.parametrize(("text", "expected"), LABEL_CASES)
def test_is_dns1123_label(text, expected):
    assert gostrconv.is_dns1123_label(text) == expected


@pytest.mark.parametrize(("text", "expected"), QUALIFIED_NAME_CASES)
def test_is_qualified_name(text, expected):
    assert gostrconv.is_qualified_name(text) == expected


@pytest.mark.parametrize(("text", "expected"), LABEL_VALUE_CASES)
def test_is_valid_label_value(text, expected):
    assert gostrconv.is_valid_label_value(text) == expected


@pytest.mark.parametrize(("labels", "expected"), SELECTOR_CASES)
def test_valid_label_selector_map(labels, expected):
    """One message per bad entry, in key order; Go reports the first bad entry of its (random) map order."""
    assert gostrconv.valid_label_selector_map(labels) == expected


# --- messages and types ---------------------------------------------------------------------------------------


def test_errors_are_value_errors():
    assert issubclass(GoParseError, ValueError)
    with pytest.raises(ValueError, match="invalid syntax"):
        gostrconv.parse_float("1_")


def test_strconv_messages_quote_like_go():
    """strconv.Quote: printable Unicode kept, control characters and non-printables escaped."""
    with pytest.raises(GoParseError) as err:
        gostrconv.parse_bool('é"\\\t\x00\x7f\u00a0\U0001f600\u200b')
    assert str(err.value) == (
        'strconv.ParseBool: parsing "é\\"\\\\\\t\\x00\\x7f\\u00a0\U0001f600\\u200b": invalid syntax'
    )


def test_time_messages_escape_non_ascii_bytes():
    """The time package quotes with its own function: anything outside printable ASCII becomes \\xNN bytes."""
    with pytest.raises(GoParseError) as err:
        gostrconv.parse_duration("1é\t")
    assert str(err.value) == 'time: unknown unit "\\xc3\\xa9\\x09" in duration "1\\xc3\\xa9\\x09"'
    with pytest.raises(GoParseError, match=r'^time: missing unit in duration "-5"$'):
        gostrconv.parse_duration("-5")


def test_atoi_names_itself():
    with pytest.raises(GoParseError, match=r'^strconv\.Atoi: parsing "1x": invalid syntax$'):
        gostrconv.atoi("1x")
    assert gostrconv.atoi("-9223372036854775808") == gostrconv.parse_int("-9223372036854775808", 0)


def test_go_nan_and_negative_zero():
    assert gostrconv.parse_float("NaN").hex() == "nan"
    assert float_hex(gostrconv.parse_float("-0")) == "-0x0.0p+0"
    assert float_hex(gostrconv.parse_float("-1e-400")) == "-0x0.0p+0"


def test_huge_quantity_exponents_stay_symbolic():
    """1e2147483647 is kept as a power of ten, not expanded; an exponent is an int32 in Go (wraps modulo 2**32)."""
    assert gostrconv.parse_quantity("1e2147483647") == Decimal("1E2147483647")
    assert gostrconv.parse_quantity("1e4294967297") == 10
