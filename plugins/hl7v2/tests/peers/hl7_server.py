#!/usr/bin/python3
"""An independent MLLP receiver for the hl7v2 sink tests, built on Debian's python3-hl7.

Answers each message with the next code from --answers (comma-separated: AA, AE, AR, CA, CE, CR
or NONE for no answer; the last repeats), logs "MSH-10 code" per message to --log, and writes its
port to --port-file once it listens on 127.0.0.1:0.
"""
import argparse
import asyncio
import os
import ssl

import hl7
import hl7.mllp


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--answers", default="AA")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--tls-ca", help="require client certificates signed by this CA")
    a = p.parse_args()
    answers = a.answers.split(",")
    count = [0]

    async def handle(reader, writer):
        try:
            while not writer.is_closing():
                msg = await reader.readmessage()
                code = answers[min(count[0], len(answers) - 1)]
                count[0] += 1
                control_id = str(msg.segment("MSH")[10])
                with open(a.log, "a", encoding="utf-8") as f:
                    f.write("%s %s %s\n" % (control_id, code, str(msg.segment("MSH")[9])))
                if code == "NONE":
                    continue
                writer.writemessage(msg.create_ack(ack_code=code))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    ctx = None
    if a.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        if a.tls_ca:
            ctx.load_verify_locations(a.tls_ca)
            ctx.verify_mode = ssl.CERT_REQUIRED

    async def run():
        server = await hl7.mllp.start_hl7_server(
            handle, host="127.0.0.1", port=0, encoding=a.encoding, ssl=ctx)
        port = server.sockets[0].getsockname()[1]
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, a.port_file)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
