"""The seed article's subscriber, unchanged but for Python 3: a ws4py
client that prints every message it receives. Herald's tests run it to
prove that clients written for the original server still work."""
import sys

from ws4py.client.threadedclient import WebSocketClient


class EchoClient(WebSocketClient):
    def opened(self):
        print("Connection opened...", flush=True)

    def closed(self, code, reason=None):
        print("Closed down", code, reason, flush=True)

    def received_message(self, m):
        print(m, flush=True)


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "ws://localhost:9000/ws"
    try:
        ws = EchoClient(url)
        ws.connect()
        ws.run_forever()
    except KeyboardInterrupt:
        ws.close()
