"""The one exception the client raises for a failed call: the gRPC status code and the server's
message (which names the field or file and what would be right)."""
import grpc


class LensdError(Exception):
    """A call the server (or the channel) refused or could not finish.

    Attributes:
        code: the grpc.StatusCode, e.g. grpc.StatusCode.INVALID_ARGUMENT.
        message: the server's message.
        method: the RPC, e.g. "Decode".
    """

    def __init__(self, code: grpc.StatusCode, message: str, method: str = ""):
        self.code = code
        self.message = message
        self.method = method
        super().__init__(f"{method + ': ' if method else ''}{code.name}: {message}")


class VersionError(LensdError):
    """The server cannot serve this client's version (FAILED_PRECONDITION naming the version it
    needs): upgrade the client (pip install ./clients/python from the server's repository)."""


def from_rpc_error(error: grpc.RpcError, method: str) -> LensdError:
    """The LensdError for a grpc.RpcError (or grpc.aio.AioRpcError)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    message = message or ""
    if code == grpc.StatusCode.FAILED_PRECONDITION and "needs clients >=" in message:
        return VersionError(code, message, method)
    return LensdError(code, message, method)
