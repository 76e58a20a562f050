"""The baseline: a bare Tornado "hello world" on the same machine, in the same run."""

from __future__ import annotations

import asyncio
import sys

import tornado.web


class HelloHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("Hello, world")


async def serve(port: int) -> None:
    app = tornado.web.Application([(r"/", HelloHandler)], log_function=lambda handler: None)
    app.listen(port, address="127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
