"""Every way a handler writes logs: `{"case": NAME}`. The RIE captures the runtime's stdout; the
tests compare it line for line (timestamps and request ids normalised)."""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger("corpus.logs")


def handler(event: Any, context: Any) -> Any:
    case = event["case"]
    if case == "print":
        print("printed line")
        print("no newline", end="")
        print()
        print("non-ASCII: Grüße \U0001f680")
        print("to stderr", file=sys.stderr)
    elif case == "levels":
        logging.debug("root debug %s", 1)
        logging.info("root info %s", 2)
        logging.warning("root warning %s", 3)
        logging.error("root error %s", 4)
        logging.critical("root critical %s", 5)
        logger.info("named info")
        logger.warning("named warning")
        logger.log(25, "custom level 25")
    elif case == "exception":
        try:
            raise ValueError("logged exception")
        except ValueError:
            logger.exception("caught it")
    elif case == "extra":
        logger.warning("with extra", extra={"order_id": 7, "nested": {"k": [1, 2]},
                                            "obj": object.__name__})
        logger.warning({"dict": "message", "n": 1})
        logger.warning("multi\nline\nmessage")
    elif case == "context_log":
        context.log("context.log line\n")
        context.log("context.log without newline")
        context.log({"not": "a string"})
    elif case == "multiline_print":
        print("line one\nline two\r\nline three")
    return {"case": case}
