# Sourced by the bench scripts (after they cd to the repository root).
# free_port: an ephemeral port on 127.0.0.1 that was free a moment ago.
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
