#!/usr/bin/env python3
"""A serial line at a real baud rate between an agent and a QEMU board: opens the board's pty
(argv[1]), makes a new pty for the agent, prints its path, and carries bytes both ways no faster
than argv[2] baud (8N1: ten bits a byte). Runs until killed."""
import os, select, sys, time, tty

board = os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
tty.setraw(board)
agent, agent_slave = os.openpty()
tty.setraw(agent_slave)
os.set_blocking(board, False)
os.set_blocking(agent, False)
print(os.ttyname(agent_slave), flush=True)
per_byte = 10.0 / int(sys.argv[2])
# Each direction: bytes waiting, and when the line is free again.
queues = {board: bytearray(), agent: bytearray()}
free = {board: 0.0, agent: 0.0}
peer = {board: agent, agent: board}
while True:
    now = time.monotonic()
    readable, _, _ = select.select([board, agent], [], [], 0.001)
    for fd in readable:
        try:
            queues[peer[fd]] += os.read(fd, 4096)
        except BlockingIOError:
            pass
        except OSError:
            time.sleep(0.01)
    for fd, q in queues.items():
        # Send what the line has carried by now, one byte per ten bit times (an idle line
        # saves up no time).
        now = time.monotonic()
        if not q:
            free[fd] = max(free[fd], now)
            continue
        n = min(len(q), int((now - free[fd]) / per_byte))
        if n > 0:
            try:
                sent = os.write(fd, bytes(q[:n]))
            except BlockingIOError:
                sent = 0
            del q[:sent]
            free[fd] += sent * per_byte
