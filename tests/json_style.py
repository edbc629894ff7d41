"""The API's error objects as the tests expect them."""

from urllib.parse import parse_qsl


def refusal(query: str, message: str) -> dict:
    """The error object for ``message``: a value out of range also names its parameter and the value sent."""
    named = [(k, v) for k, v in parse_qsl(query.lstrip("?"), keep_blank_values=True) if message.startswith(k + ":")]
    return {"message": message, **({"parameter": named[0][0], "value": named[0][1]} if named else {})}
