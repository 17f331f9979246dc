"""`Client` (blocking) and `AsyncClient` (asyncio): the chainrule calls with deadlines and retries."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Self, TypeVar

import grpc
import grpc.aio
from google.protobuf.message import Message

from chainrule.v1 import chainrule_pb2 as pb
from chainrule.v1 import chainrule_pb2_grpc as pb_grpc

from . import _chunks as chunks
from . import _convert as convert
from ._config import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_TIMEOUT,
    USE_CLIENT_DEFAULT,
    Deadline,
    RetryPolicy,
    Settings,
    Timeout,
    build_settings,
    retry_delay,
)
from ._convert import Point, Points, SimplificationName, WrtSpec
from ._exceptions import ChainruleError, error_from_rpc, unimplemented
from ._models import Derivative, Evaluation, Gradient, Jacobian, Parsed, Series, ServerInfo

_Request = TypeVar("_Request", bound=Message)
_Response = TypeVar("_Response", bound=Message)
_Answer = TypeVar("_Answer")


class _BaseClient:
    """The settings both clients share; see `Client` for the arguments."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        token: str | None = None,
        metadata: Mapping[str, str] | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        tls_server_name: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        channel_options: Sequence[tuple[str, Any]] = (),
        seed: int | None = None,
    ) -> None:
        self._settings: Settings = build_settings(
            target,
            timeout=timeout,
            retry=retry,
            token=token,
            metadata=metadata,
            tls=tls,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            tls_server_name=tls_server_name,
            max_message_bytes=max_message_bytes,
            channel_options=channel_options,
        )
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._open()

    def _open(self) -> None:
        raise NotImplementedError

    def _now(self) -> float:
        """The clock deadlines and retries are measured on (tests substitute one they drive)."""
        return time.monotonic()

    @property
    def target(self) -> str:
        """The server address this client talks to."""
        return self._settings.target

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r})"

    def _failure(
        self, exc: grpc.RpcError, request: Message, attempt: int, deadline: Deadline
    ) -> ChainruleError | float:
        """The error to raise for a failed call, or the delay in seconds before retrying it."""
        error = error_from_rpc(exc)
        if error.code is grpc.StatusCode.UNIMPLEMENTED:
            return unimplemented(error, type(request).__name__.removesuffix("Request"), self.target)
        delay = retry_delay(self._settings.retry, error, attempt, deadline, self._rng)
        return error if delay is None else delay


class Client(_BaseClient):
    """A blocking chainrule client.

    >>> with Client("127.0.0.1:50051") as client:
    ...     client.differentiate("sin(x^2)").derivative
    '2*x*cos(x^2)'

    Arguments: `target` ("host:port"); `timeout`, the default deadline of each call in seconds
    (None: no deadline; every call may override it); `retry`, the `RetryPolicy` (UNAVAILABLE, overload);
    `token`, sent as `authorization: Bearer <token>`; `metadata`, extra headers on every call;
    `tls=True` for TLS with the system's roots, or `root_certificates` (PEM) and, for mutual TLS,
    `private_key` + `certificate_chain` (PEM); `tls_server_name` overrides the name checked against
    the server's certificate; `max_message_bytes` bounds each message; `seed` fixes the jitter.
    """

    def _open(self) -> None:
        settings = self._settings
        self._channel: grpc.Channel
        if settings.credentials is None:
            self._channel = grpc.insecure_channel(settings.target, options=settings.options)
        else:
            self._channel = grpc.secure_channel(settings.target, settings.credentials, settings.options)
        self._stub = pb_grpc.DifferentiationServiceStub(self._channel)

    def close(self) -> None:
        """Close the channel; calls after this fail."""
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        timeout: Timeout,
    ) -> _Response:
        deadline = Deadline(self._settings.call_timeout(timeout), self._now)
        attempt = 0
        while True:
            attempt += 1
            try:
                return method(request, timeout=deadline.remaining(), metadata=self._settings.metadata)
            except grpc.RpcError as exc:
                delay = self._failure(exc, request, attempt, deadline)
                if isinstance(delay, ChainruleError):
                    raise delay from exc
            self._wait(delay)

    def _wait(self, seconds: float) -> None:
        """The pause between two attempts."""
        time.sleep(seconds)

    def _each_slice(
        self, call: Callable[[Points], _Answer], points: Points, chunk_points: int, in_flight: int
    ) -> list[_Answer]:
        """`call` on each slice of `points`, `in_flight` at a time (grpc channels are thread-safe)."""
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        slices = chunks.split(points, chunk_points)
        with ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="chainrule-chunk") as pool:
            futures = [pool.submit(call, part) for part in slices]
            try:
                return [future.result() for future in futures]
            except BaseException:
                for future in futures:  # the first failure stops the slices not yet sent
                    future.cancel()
                raise

    def differentiate(
        self,
        expression: str,
        wrt: WrtSpec = None,
        *,
        simplification: SimplificationName = "fast",
        latex: bool = False,
        explain: bool = False,
        verify: bool = False,
        formats: Sequence[convert.FormatName] = (),
        dependent: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Derivative:
        """The derivative of `expression`: `wrt="x"`, `{"x": 2, "y": 1}` or `[("x", 2), ("y", 1)]`.

        `explain=True` adds the derivation (`steps`), `verify=True` a numeric self-check (`check`);
        `formats` may ask for "latex", "mathml" and code in "python", "c" or "javascript" (`code`).
        `dependent="y"`: implicit differentiation of the equation `expression` ("x^2 + y^2 = 25"),
        which defines y as a function of the one `wrt` variable (by default its only other one).
        """
        request = convert.differentiate_request(
            expression,
            wrt,
            simplification,
            latex,
            explain=explain,
            verify=verify,
            formats=formats,
            dependent=dependent,
        )
        response = self._call(self._stub.Differentiate, request, timeout)
        return convert.derivative(response, latex or "latex" in formats, "mathml" in formats)

    def evaluate(
        self,
        expression: str,
        point: Point | None = None,
        *,
        points: Points | None = None,
        wrt: WrtSpec = None,
        dependent: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        chunk_points: int | None = None,
        in_flight: int = 2,
    ) -> Evaluation:
        """The value at `point` ({"x": 1.0}) or the values at `points` ({"x": [0, 1, 2]} or arrays).

        `chunk_points`: send `points` as calls of at most that many points, `in_flight` at a time,
        for batches past the message limit; the answer is the same, `timeout` applies to each call.
        `dependent` (with `wrt`): the implicit derivative, as in `differentiate`, at points that give
        both variables (nothing is solved: a point off the curve is not checked).
        """
        if chunk_points is not None and points is not None and point is None:  # else the server refuses both
            parts = self._each_slice(
                lambda part: self.evaluate(
                    expression, points=part, wrt=wrt, dependent=dependent, timeout=timeout
                ),
                points, chunk_points, in_flight,
            )  # fmt: skip
            return chunks.join_evaluations(parts, convert.wants_numpy(points))
        request = convert.evaluate_request(expression, point, points, wrt, dependent)
        response = self._call(self._stub.Evaluate, request, timeout)
        return convert.evaluation(response, convert.wants_numpy(points))

    def gradient(
        self,
        expression: str,
        point: Point | None = None,
        *,
        points: Points | None = None,
        variables: Sequence[str] | None = None,
        hessian: bool = False,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        chunk_points: int | None = None,
        in_flight: int = 2,
    ) -> Gradient:
        """Value, gradient (and Hessian if asked) at `point` or at `points`; `chunk_points` as `evaluate`."""
        if chunk_points is not None and points is not None and point is None:  # else the server refuses both
            parts = self._each_slice(
                lambda part: self.gradient(
                    expression, points=part, variables=variables, hessian=hessian, timeout=timeout
                ),
                points, chunk_points, in_flight,
            )  # fmt: skip
            return chunks.join_gradients(parts, convert.wants_numpy(points))
        request = convert.gradient_request(expression, point, points, variables, hessian)
        response = self._call(self._stub.GradientAtPoint, request, timeout)
        return convert.gradient(response, convert.wants_numpy(points), hessian)

    def jacobian(
        self,
        expressions: Sequence[str],
        point: Point | None = None,
        *,
        points: Points | None = None,
        variables: Sequence[str] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        chunk_points: int | None = None,
        in_flight: int = 2,
    ) -> Jacobian:
        """Values and Jacobian of `expressions` (the rows) by `variables` (the columns; default all,
        sorted) at `point` or at `points`; `chunk_points` as `evaluate`. Needs a server of 0.2.0 or later.
        """
        if chunk_points is not None and points is not None and point is None:  # else the server refuses both
            parts = self._each_slice(
                lambda part: self.jacobian(expressions, points=part, variables=variables, timeout=timeout),
                points, chunk_points, in_flight,
            )  # fmt: skip
            return chunks.join_jacobians(parts, convert.wants_numpy(points))
        request = convert.jacobian_request(expressions, point, points, variables)
        response = self._call(self._stub.Jacobian, request, timeout)
        return convert.jacobian(response, convert.wants_numpy(points))

    def series(
        self,
        expression: str,
        variable: str | None = None,
        *,
        around: str | float = "0",
        order: int | None = None,
        latex: bool = False,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Series:
        """The Taylor polynomial of `expression` in `variable` (default: its only one) around the
        exact constant `around` ("pi/2", "1/2" or a number) of degree `order` (server default 5).
        No expansion at the point (log(x) at 0) raises `ChainruleError` with reason "NO_TAYLOR_SERIES".
        Needs a server of 0.2.0 or later.
        """
        request = convert.series_request(expression, variable, around, order, latex)
        response = self._call(self._stub.Series, request, timeout)
        return convert.series(response, latex)

    def server_info(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> ServerInfo:
        """The server's version, limits, functions, constants and modes."""
        response = self._call(self._stub.GetServerInfo, pb.GetServerInfoRequest(), timeout)
        return convert.server_info(response)

    def parse(self, expression: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Parsed:
        """How the server reads `expression`: cheap, for checking text as it is typed.

        A text that does not parse is not an exception: the result's `error` says why and where.
        """
        response = self._call(self._stub.Parse, pb.ParseRequest(expression=expression), timeout)
        return convert.parsed(response)


class AsyncClient(_BaseClient):
    """The asyncio chainrule client; same arguments and calls as `Client`, awaited.

    >>> async with AsyncClient("127.0.0.1:50051") as client:
    ...     (await client.differentiate("e^(2x)")).derivative
    """

    def _open(self) -> None:
        settings = self._settings
        self._channel: grpc.aio.Channel
        if settings.credentials is None:
            self._channel = grpc.aio.insecure_channel(settings.target, options=settings.options)
        else:
            self._channel = grpc.aio.secure_channel(settings.target, settings.credentials, settings.options)
        self._stub = pb_grpc.DifferentiationServiceStub(self._channel)

    async def close(self) -> None:
        """Close the channel; calls after this fail."""
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Request, _Response],
        request: _Request,
        timeout: Timeout,
    ) -> _Response:
        deadline = Deadline(self._settings.call_timeout(timeout), self._now)
        attempt = 0
        while True:
            attempt += 1
            try:
                return await method(request, timeout=deadline.remaining(), metadata=self._settings.metadata)
            except grpc.aio.AioRpcError as exc:
                delay = self._failure(exc, request, attempt, deadline)
                if isinstance(delay, ChainruleError):
                    raise delay from exc
            await self._wait(delay)

    async def _wait(self, seconds: float) -> None:
        """The pause between two attempts."""
        await asyncio.sleep(seconds)

    async def _each_slice(
        self,
        call: Callable[[Points], Awaitable[_Answer]],
        points: Points,
        chunk_points: int,
        in_flight: int,
    ) -> list[_Answer]:
        """`call` on each slice of `points`, `in_flight` at a time; see `Client._each_slice`."""
        return await chunks.gather_in_order(call, chunks.split(points, chunk_points), in_flight)

    async def differentiate(
        self,
        expression: str,
        wrt: WrtSpec = None,
        *,
        simplification: SimplificationName = "fast",
        latex: bool = False,
        explain: bool = False,
        verify: bool = False,
        formats: Sequence[convert.FormatName] = (),
        dependent: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Derivative:
        """The derivative of `expression`; see `Client.differentiate`."""
        request = convert.differentiate_request(
            expression,
            wrt,
            simplification,
            latex,
            explain=explain,
            verify=verify,
            formats=formats,
            dependent=dependent,
        )
        response: pb.DifferentiateResponse = await self._call(self._stub.Differentiate, request, timeout)
        return convert.derivative(response, latex or "latex" in formats, "mathml" in formats)

    async def evaluate(
        self,
        expression: str,
        point: Point | None = None,
        *,
        points: Points | None = None,
        wrt: WrtSpec = None,
        dependent: str | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        chunk_points: int | None = None,
        in_flight: int = 2,
    ) -> Evaluation:
        """The value at `point` or the values at `points`; see `Client.evaluate`."""
        if chunk_points is not None and points is not None and point is None:  # else the server refuses both
            parts = await self._each_slice(
                lambda part: self.evaluate(
                    expression, points=part, wrt=wrt, dependent=dependent, timeout=timeout
                ),
                points, chunk_points, in_flight,
            )  # fmt: skip
            return chunks.join_evaluations(parts, convert.wants_numpy(points))
        request = convert.evaluate_request(expression, point, points, wrt, dependent)
        response: pb.EvaluateResponse = await self._call(self._stub.Evaluate, request, timeout)
        return convert.evaluation(response, convert.wants_numpy(points))

    async def gradient(
        self,
        expression: str,
        point: Point | None = None,
        *,
        points: Points | None = None,
        variables: Sequence[str] | None = None,
        hessian: bool = False,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        chunk_points: int | None = None,
        in_flight: int = 2,
    ) -> Gradient:
        """Value, gradient (and Hessian if asked); see `Client.gradient`."""
        if chunk_points is not None and points is not None and point is None:  # else the server refuses both
            parts = await self._each_slice(
                lambda part: self.gradient(
                    expression, points=part, variables=variables, hessian=hessian, timeout=timeout
                ),
                points, chunk_points, in_flight,
            )  # fmt: skip
            return chunks.join_gradients(parts, convert.wants_numpy(points))
        request = convert.gradient_request(expression, point, points, variables, hessian)
        response: pb.GradientAtPointResponse = await self._call(self._stub.GradientAtPoint, request, timeout)
        return convert.gradient(response, convert.wants_numpy(points), hessian)

    async def jacobian(
        self,
        expressions: Sequence[str],
        point: Point | None = None,
        *,
        points: Points | None = None,
        variables: Sequence[str] | None = None,
        timeout: Timeout = USE_CLIENT_DEFAULT,
        chunk_points: int | None = None,
        in_flight: int = 2,
    ) -> Jacobian:
        """Values and Jacobian of `expressions`; see `Client.jacobian`."""
        if chunk_points is not None and points is not None and point is None:  # else the server refuses both
            parts = await self._each_slice(
                lambda part: self.jacobian(expressions, points=part, variables=variables, timeout=timeout),
                points, chunk_points, in_flight,
            )  # fmt: skip
            return chunks.join_jacobians(parts, convert.wants_numpy(points))
        request = convert.jacobian_request(expressions, point, points, variables)
        response: pb.JacobianResponse = await self._call(self._stub.Jacobian, request, timeout)
        return convert.jacobian(response, convert.wants_numpy(points))

    async def series(
        self,
        expression: str,
        variable: str | None = None,
        *,
        around: str | float = "0",
        order: int | None = None,
        latex: bool = False,
        timeout: Timeout = USE_CLIENT_DEFAULT,
    ) -> Series:
        """The Taylor polynomial of `expression`; see `Client.series`."""
        request = convert.series_request(expression, variable, around, order, latex)
        response: pb.SeriesResponse = await self._call(self._stub.Series, request, timeout)
        return convert.series(response, latex)

    async def server_info(self, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> ServerInfo:
        """The server's version, limits, functions, constants and modes."""
        request = pb.GetServerInfoRequest()
        response: pb.GetServerInfoResponse = await self._call(self._stub.GetServerInfo, request, timeout)
        return convert.server_info(response)

    async def parse(self, expression: str, *, timeout: Timeout = USE_CLIENT_DEFAULT) -> Parsed:
        """How the server reads `expression`; see `Client.parse`."""
        request = pb.ParseRequest(expression=expression)
        response: pb.ParseResponse = await self._call(self._stub.Parse, request, timeout)
        return convert.parsed(response)
