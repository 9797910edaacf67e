"""Two real processes on one data directory share the embedded conversation store (one server)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore
from tests.conftest import ROOT

# Each process opens the store (at a given moment, so that two start the server together), writes
# its own conversation, then waits (a while) for the other's.
CHILD = """
import json, sys, time
from pathlib import Path
from chatbot.store.server import connect
from chatbot.store.conversations import ConversationStore

directory, me, other, start_at = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
time.sleep(max(0.0, start_at - time.time()))
store = ConversationStore(connect(data_dir=directory))
store.append(me, [{"role": "user", "content": f"hello from {me}"}])
deadline = time.monotonic() + 20
while not store.exists(other) and time.monotonic() < deadline:
    time.sleep(0.05)
seen = [m.content for m in store.messages(other)]
print(json.dumps({"server": store.client.pid, "socket": store.client.socket_file, "seen": seen}), flush=True)
time.sleep(0.5)  # both have read before either leaves
"""


def test_two_processes_starting_at_once_share_one_server_and_every_conversation(tmp_path):
    directory = tmp_path / "redis"
    start_at = str(time.time() + 5)  # both have imported everything by then
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(directory), me, other, start_at], cwd=ROOT,
                                 text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for me, other in (("first", "second"), ("second", "first"))]
    reports = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        reports.append(json.loads(out))
    assert reports[0]["seen"] == ["hello from second"]
    assert reports[1]["seen"] == ["hello from first"]
    assert reports[0]["server"] == reports[1]["server"] and reports[0]["socket"] == reports[1]["socket"]
    # Both have left; the conversations are on disk for whoever opens the store next.
    client = connect(data_dir=directory)
    try:
        store = ConversationStore(client)
        assert [m.content for m in store.messages("first")] == ["hello from first"]
        assert [m.content for m in store.messages("second")] == ["hello from second"]
    finally:
        client.shutdown(save=True)


def test_a_process_that_joins_a_running_server_leaves_it_running_for_the_first(tmp_path):
    directory = tmp_path / "redis"
    client = connect(data_dir=directory)
    try:
        app = ConversationStore(client)
        app.append("app", [{"role": "user", "content": "from the app"}])
        child = subprocess.run([sys.executable, "-c", CHILD, str(directory), "command-line", "app", "0"], cwd=ROOT,
                               text=True, capture_output=True, timeout=120)
        assert child.returncode == 0, child.stderr
        report = json.loads(child.stdout)
        assert report["seen"] == ["from the app"] and report["server"] == client.pid
        # The other process has exited; this one's server still answers, with its conversation.
        assert [m.content for m in app.messages("command-line")] == ["hello from command-line"]
        app.append("app", [{"role": "assistant", "content": "still here"}])
        assert len(app.messages("app")) == 2
    finally:
        client.shutdown(save=True)
