"""`webhook-worker`: the background worker that sends webhooks and answers help desk conversations."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "webhook-worker", help="send queued webhooks (with their retries) and answer Chatwoot conversations",
        description="Runs the jobs queued in the conversation store's Redis (RQ queue "
                    "'chatbot'): webhook deliveries and their scheduled retries, Chatwoot replies. "
                    "Run one beside the app or the API; more run side by side.")
    parser.add_argument("--burst", action="store_true", help="run the jobs waiting now, then exit")
    parser.add_argument("--quiet", action="store_true", help="log warnings only, not every job")
    parser.set_defaults(func=run_worker)


def run_worker(args: argparse.Namespace) -> int:
    from rq import SimpleWorker

    from chatbot.store.conversations import ConversationStore
    from chatbot.store.jobs import job_queue, worker_connection  # here: other commands must not load the chat core
    from common.settings import Settings
    store = ConversationStore.from_settings(Settings.load())
    # SimpleWorker runs jobs in this process, so the knowledge base and the model that Chatwoot
    # replies need are loaded once, not once per job as in a forking worker.
    connection = worker_connection(store.client)
    worker = SimpleWorker([job_queue(connection)], connection=connection)
    try:
        worker.work(burst=args.burst, with_scheduler=True, logging_level="WARNING" if args.quiet else "INFO")
    finally:
        # The embedded Redis stops when its last client leaves (at exit): close what RQ opened first.
        if worker.scheduler is not None:
            worker.scheduler.connection.connection_pool.disconnect()
        connection.connection_pool.disconnect()
    return 0
