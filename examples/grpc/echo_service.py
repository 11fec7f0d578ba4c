#!/usr/bin/python3
"""An example gRPC service for Gate (docs/grpc.md), in Python.

It speaks the original Gate's protocol (package gate.grpc,
proto/gate/grpc/service.proto) and offers one service, "echo", which sends
every CALL packet back to the program, in order.

Run by Gate through `service.grpc.commands = ["/usr/bin/python3 .../echo_service.py"]`
it serves on fd 3 (one end of a socketpair). With `--listen ADDRESS`
(e.g. unix:/run/echo.sock or 127.0.0.1:50051) it serves there instead, for
`service.grpc.targets = ["ADDRESS insecure"]`.

Needs only grpcio and protobuf (Debian: python3-grpcio, python3-protobuf):
the messages are declared with protobuf's descriptor API and the methods
served with grpc's generic handlers, so no generated stubs are needed.

INFO packets whose content is one of these words change its behaviour (for
Gate's tests of misbehaving services):
  hold   keep the replies to later CALLs until the instance is suspended
         (they are then in its snapshot, and sent after it is restored)
  exit   exit the process at once (status 3)
  short  send the program a 3-byte packet (a protocol violation)
  stall  never answer this Handle call
  flood  send the program 4 MiB of INFO packets at once
"""

import argparse
import os
import queue
import select
import signal
import socket
import sys
import tempfile
import threading
import uuid
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, empty_pb2, wrappers_pb2

try:
    from google.protobuf.message_factory import GetMessageClass
except ImportError:  # protobuf < 4.22
    from google.protobuf import message_factory

    def GetMessageClass(desc):
        return message_factory.MessageFactory(desc.file.pool).GetPrototype(desc)


SERVICE_NAME = "echo"
SERVICE_REVISION = "1"

HEADER_SIZE = 8
DOMAIN_CALL = 0
DOMAIN_INFO = 1


def _messages():
    """The request and response messages of proto/gate/grpc/service.proto."""
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="gate/grpc/service_messages.proto", package="gate.grpc", syntax="proto3")

    def message(name, *fields):
        m = fdp.message_type.add(name=name)
        for number, (field, type_, extra) in enumerate(fields, 1):
            m.field.add(name=field, number=number, type=type_, **{"label": F.LABEL_OPTIONAL, **extra})

    S, B, I, BY, M = F.TYPE_STRING, F.TYPE_BOOL, F.TYPE_INT32, F.TYPE_BYTES, F.TYPE_MESSAGE
    message("Service", ("name", S, {}), ("revision", S, {}), ("require_principal", B, {}))
    message("InitRequest")
    message("InitResponse", ("services", M, {"type_name": ".gate.grpc.Service", "label": F.LABEL_REPEATED}))
    message("InstanceConfig", ("max_send_size", I, {}), ("process_key", BY, {}), ("principal_id", S, {}), ("instance_uuid", BY, {}))
    message("CreateRequest", ("service_name", S, {}), ("config", M, {"type_name": ".gate.grpc.InstanceConfig"}), ("snapshot", BY, {}))
    message("CreateResponse", ("id", BY, {}), ("restoration_error", S, {}))
    message("ReceiveRequest", ("id", BY, {}))
    message("HandleRequest", ("id", BY, {}), ("data", BY, {}))
    message("SuspendRequest", ("id", BY, {}))
    message("SnapshotRequest", ("id", BY, {}), ("outgoing", BY, {}), ("incoming", BY, {}))
    message("ShutdownRequest", ("id", BY, {}))
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(fdp.SerializeToString())
    return {m.name: GetMessageClass(pool.FindMessageTypeByName("gate.grpc." + m.name)) for m in fdp.message_type}


pb = _messages()
END = object()
# Set when the process stops: releases a stalled Handle.
stopping = threading.Event()


def packets(buf):
    """Splits concatenated packets; raises ValueError if they do not fit."""
    out = []
    while buf:
        if len(buf) < HEADER_SIZE:
            raise ValueError("snapshot contains a partial packet")
        n = int.from_bytes(buf[:4], "little")
        if n < HEADER_SIZE or n > len(buf):
            raise ValueError("snapshot packet size out of bounds")
        out.append(bytes(buf[:n]))
        buf = buf[n:]
    return out


class Instance:
    def __init__(self, queued):
        self.outgoing = queue.Queue()
        for p in queued:
            self.outgoing.put(p)
        self.lock = threading.Lock()
        self.receiving = False
        self.stream_done = threading.Event()
        self.holding = False
        self.held = []
        self.suspended = False
        self.leftover = []

    def handle(self, p):
        domain = p[6] & 0x0F if len(p) > 6 else -1
        content = p[HEADER_SIZE:]
        if domain == DOMAIN_INFO:
            if content == b"hold":
                self.holding = True
            elif content == b"exit":
                sys.stderr.write("echo service: exiting as asked\n")
                sys.stderr.flush()
                os._exit(3)
            elif content == b"short":
                self.outgoing.put(b"abc")
            elif content == b"stall":
                stopping.wait()
            elif content == b"flood":
                info = (HEADER_SIZE + 1024).to_bytes(4, "little") + bytes([0, 0, DOMAIN_INFO, 0]) + bytes(1024)
                for _ in range(4096):
                    self.outgoing.put(info)
            return
        if domain != DOMAIN_CALL:
            return
        with self.lock:
            if self.holding or self.suspended:
                self.held.append(p)
                return
        self.outgoing.put(p)

    def stream(self):
        try:
            while True:
                p = self.outgoing.get()
                if p is END:
                    return
                yield wrappers_pb2.BytesValue(value=p)
        finally:
            # What was not sent stays for the snapshot.
            while True:
                try:
                    p = self.outgoing.get_nowait()
                except queue.Empty:
                    break
                if p is not END:
                    self.leftover.append(p)
            self.stream_done.set()

    def stop(self):
        with self.lock:
            self.suspended = True
        self.outgoing.put(END)


class Service:
    def __init__(self):
        self.lock = threading.Lock()
        self.instances = {}

    def get(self, context, request, remove=False):
        with self.lock:
            inst = self.instances.pop(request.id, None) if remove else self.instances.get(request.id)
        if inst is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "instance not found")
        return inst

    def Init(self, request, context):
        return pb["InitResponse"](services=[pb["Service"](name=SERVICE_NAME, revision=SERVICE_REVISION)])

    def Create(self, request, context):
        if request.service_name != SERVICE_NAME:
            context.abort(grpc.StatusCode.NOT_FOUND, "no such service")
        try:
            queued = packets(request.snapshot)
        except ValueError as e:
            return pb["CreateResponse"](restoration_error=str(e))
        id_ = uuid.uuid4().bytes
        with self.lock:
            self.instances[id_] = Instance(queued)
        return pb["CreateResponse"](id=id_)

    def Receive(self, request, context):
        inst = self.get(context, request)
        with inst.lock:
            if inst.receiving:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "redundant reception")
            inst.receiving = True
        context.add_callback(inst.stop)
        yield from inst.stream()

    def Handle(self, request, context):
        self.get(context, request).handle(request.data)
        return empty_pb2.Empty()

    def Suspend(self, request, context):
        self.get(context, request).stop()
        return empty_pb2.Empty()

    def Snapshot(self, request, context):
        inst = self.get(context, request, remove=True)
        if inst.receiving and not inst.stream_done.wait(10):
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "packet stream did not end")
        if not inst.receiving:
            inst.stop()
            list(inst.stream())
        state = request.outgoing + b"".join(inst.leftover) + b"".join(inst.held) + request.incoming
        return wrappers_pb2.BytesValue(value=state)

    def Shutdown(self, request, context):
        self.get(context, request, remove=True).stop()
        return empty_pb2.Empty()


def handlers(svc):
    u = grpc.unary_unary_rpc_method_handler
    root = {"Init": u(svc.Init, pb["InitRequest"].FromString, pb["InitResponse"].SerializeToString)}
    empty = empty_pb2.Empty.SerializeToString
    instance = {
        "Create": u(svc.Create, pb["CreateRequest"].FromString, pb["CreateResponse"].SerializeToString),
        "Receive": grpc.unary_stream_rpc_method_handler(svc.Receive, pb["ReceiveRequest"].FromString, wrappers_pb2.BytesValue.SerializeToString),
        "Handle": u(svc.Handle, pb["HandleRequest"].FromString, empty),
        "Suspend": u(svc.Suspend, pb["SuspendRequest"].FromString, empty),
        "Snapshot": u(svc.Snapshot, pb["SnapshotRequest"].FromString, wrappers_pb2.BytesValue.SerializeToString),
        "Shutdown": u(svc.Shutdown, pb["ShutdownRequest"].FromString, empty),
    }
    return (
        grpc.method_handlers_generic_handler("gate.grpc.Root", root),
        grpc.method_handlers_generic_handler("gate.grpc.Instance", instance),
    )


def forward_fd3(address):
    """grpcio cannot serve on an inherited socket: carry fd 3 to a connection to our own listener."""
    pair = socket.socket(fileno=3)
    local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    local.connect(address)
    ends = {pair: local, local: pair}
    while True:
        readable, _, _ = select.select(list(ends), [], [])
        for r in readable:
            data = r.recv(65536)
            if not data:
                return
            ends[r].sendall(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", help="serve on this address instead of fd 3")
    args = parser.parse_args()

    # SIGTERM (from Gate when it stops) is taken by sigwait below, in the main
    # thread: blocked here, before any thread starts, so that every thread
    # inherits the mask. (A Python signal handler setting an Event the main
    # thread waits on can deadlock.)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    # Receive streams hold a worker each: this many instances at once.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=128))
    server.add_generic_rpc_handlers(handlers(Service()))

    if args.listen:
        if not server.add_insecure_port(args.listen):
            sys.exit(f"cannot listen on {args.listen}")
        server.start()
        print("listening", flush=True)
        signal.sigwait({signal.SIGTERM})
    else:
        tmp = tempfile.mkdtemp(prefix="gate-echo-")
        address = os.path.join(tmp, "socket")
        server.add_insecure_port("unix:" + address)
        server.start()

        def forward():
            forward_fd3(address)
            # Gate closed its end: stop as if terminated.
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=forward, daemon=True).start()
        signal.sigwait({signal.SIGTERM})
        os.unlink(address)
        os.rmdir(tmp)
    stopping.set()
    server.stop(0)


if __name__ == "__main__":
    main()
