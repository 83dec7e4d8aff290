#!/usr/bin/env python3
"""A simulated GP office on Norsk Helsenett, for the demo and the tests.

It plays the other end of Samband's nhn plugin over a file catalogue, the way a local message
server hands messages to a GP system: it takes every message Samband writes into the catalogue's
out folder, validates it against the official schemas with xmllint (no network), and answers with
an Apprec 1.1 into Samband's in folder: OK when the message validates, Avvist (8221 T02) with
xmllint's reason when it does not. A request for information (DIALOG_FORESPORSEL) is also answered
with a DIALOG_SVAR from the GP carrying a PDF, linked to the request by RefToParent and
RefToConversation. Everything it writes is validated with the same schemas before it is written.

Independent of Samband's own code: Python's standard library and xmllint only.

    gp_office.py --out OUT --in IN --xsd XSD_DIR --pdf ANSWER.pdf [--log FILE] [--count N]

Runs until SIGTERM (or until it has answered N messages with --count). One line per message on
stdout (or --log): the file, its type, the schema result and the answer.
"""

import argparse
import base64
import datetime
import os
import signal
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

MH = "http://www.kith.no/xmlstds/msghead/2006-05-24"
NS = {"mh": MH}
APPREC_NS = "http://www.kith.no/xmlstds/apprec/2012-02-15"
DIALOG_NS = "http://www.kith.no/xmlstds/dialog/2013-01-23"
B64_NS = "http://www.kith.no/xmlstds/base64container"
HER_ORG = "2.16.578.1.12.4.1.1.9051"
HER_PERSON = "2.16.578.1.12.4.1.1.8116"

running = True


def stop(_signum, _frame):
    global running
    running = False


def now():
    return datetime.datetime.now().astimezone().replace(microsecond=0).isoformat()


def validate(path, xsd_dir, schema="all-messages.xsd"):
    """(ok, reason) from xmllint --nonet against the official schemas."""
    r = subprocess.run(
        ["xmllint", "--noout", "--nonet", "--schema", os.path.join(xsd_dir, schema), path],
        capture_output=True, text=True)
    if r.returncode == 0:
        return True, ""
    lines = [l for l in r.stderr.splitlines() if "validates" not in l and l.strip()]
    return False, (lines[0] if lines else "does not validate")[:400]


def text(el, path):
    found = el.find(path, NS)
    return found.text.strip() if found is not None and found.text else ""


def her_of(org):
    """The HER-id of an Organisation element (its own Ident with TypeId V=HER)."""
    for ident in org.findall("mh:Ident", NS):
        t = ident.find("mh:TypeId", NS)
        if t is not None and t.get("V") == "HER":
            return text(ident, "mh:Id")
    return ""


def party(msg_info, side):
    """Organisation name/HER, its unit (if any) and a HealthcareProfessional HER (if any)."""
    org = msg_info.find(f"mh:{side}/mh:Organisation", NS)
    if org is None:
        return {}
    p = {"name": text(org, "mh:OrganisationName"), "her": her_of(org)}
    unit = org.find("mh:Organisation", NS)
    if unit is not None:
        p["unit_name"], p["unit_her"] = text(unit, "mh:OrganisationName"), her_of(unit)
    hp = org.find(".//mh:HealthcareProfessional", NS)
    if hp is not None:
        p["person_name"] = (text(hp, "mh:GivenName") + " " + text(hp, "mh:FamilyName")).strip()
        for ident in hp.findall("mh:Ident", NS):
            t = ident.find("mh:TypeId", NS)
            if t is not None and t.get("V") == "HER":
                p["person_her"] = text(ident, "mh:Id")
            if t is not None and t.get("V") == "HPR":
                p["person_hpr"] = text(ident, "mh:Id")
    return p


def apprec_party(role_v, role_dn, p):
    inner = ""
    if p.get("unit_her"):
        inner += (f"<Dept><Name>{escape(p.get('unit_name') or 'Avdeling')}</Name>"
                  f"<Id>{p['unit_her']}</Id><TypeId V=\"HER\" DN=\"HER-id\"/></Dept>")
    if p.get("person_her"):
        inner += (f"<HCPerson><Name>{escape(p.get('person_name') or 'Lege')}</Name>"
                  f"<Id>{p['person_her']}</Id><TypeId V=\"HER\" DN=\"HER-id\"/></HCPerson>")
    return (f"<Role V=\"{role_v}\" DN=\"{role_dn}\"/><HCP><Inst>"
            f"<Name>{escape(p.get('name') or 'Ukjent')}</Name><Id>{p.get('her', '0')}</Id>"
            f"<TypeId V=\"HER\" DN=\"HER-id\"/>{inner}</Inst></HCP>")


def apprec(msg_type, gen_date, msg_id, us, them, ok, reason=""):
    """An Apprec 1.1 from us (the receiver of the message) to them (its sender)."""
    status = '<Status V="1" DN="OK"/>' if ok else (
        '<Status V="2" DN="Avvist"/>'
        f'<Error V="T02" S="2.16.578.1.12.4.1.1.8221" DN="XML validerer ikke" '
        f'OT="{escape(reason, {chr(34): "&quot;"})}"/>')
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<AppRec xmlns="{APPREC_NS}">'
        '<MsgType V="APPREC" DN="Applikasjonskvittering"/>'
        '<MIGversion>v1.1 2012-02-15</MIGversion>'
        f'<GenDate>{now()}</GenDate><Id>{uuid.uuid4()}</Id>'
        f'<Sender>{apprec_party("PRIM", "Primærmottaker", us)}</Sender>'
        f'<Receiver>{apprec_party("AVS", "Avsender", them)}</Receiver>'
        f'{status}'
        f'<OriginalMsgId><MsgType V="{escape(msg_type)}" DN="{escape(msg_type)}"/>'
        f'<IssueDate>{gen_date}</IssueDate><Id>{msg_id}</Id></OriginalMsgId>'
        '</AppRec>\n')


def organisation(p, gp=False):
    unit = ""
    if p.get("unit_her"):
        unit = (f"<Organisation><OrganisationName>{escape(p.get('unit_name') or 'Avdeling')}"
                f"</OrganisationName><Ident><Id>{p['unit_her']}</Id>"
                f'<TypeId V="HER" S="{HER_ORG}" DN="HER-id"/></Ident></Organisation>')
    person = ""
    if gp and p.get("person_her"):
        given, _, family = (p.get("person_name") or "Fastlege Lege").partition(" ")
        person = (
            "<HealthcareProfessional>"
            '<TypeHealthcareProfessional V="LE" DN="Lege"/>'
            f'<RoleToPatient V="6" S="2.16.578.1.12.4.1.1.9034" DN="Fastlege"/>'
            f"<FamilyName>{escape(family or 'Lege')}</FamilyName><GivenName>{escape(given)}</GivenName>"
            + (f'<Ident><Id>{p["person_hpr"]}</Id><TypeId V="HPR" S="{HER_PERSON}" DN="HPR-nummer"/></Ident>'
               if p.get("person_hpr") else "")
            + f'<Ident><Id>{p["person_her"]}</Id><TypeId V="HER" S="{HER_PERSON}" DN="HER-id"/></Ident>'
            "</HealthcareProfessional>")
    return (f"<Organisation><OrganisationName>{escape(p.get('name') or 'Ukjent')}</OrganisationName>"
            f'<Ident><Id>{p.get("her", "0")}</Id><TypeId V="HER" S="{HER_ORG}" DN="HER-id"/></Ident>'
            f"{unit}{person}</Organisation>")


def answer(root, us, them, pdf_name, pdf_bytes):
    """A DIALOG_SVAR from the GP (us) to the sender of a DIALOG_FORESPORSEL (them), with a PDF."""
    info = root.find("mh:MsgInfo", NS)
    request_id = text(info, "mh:MsgId")
    conversation = text(info, "mh:ConversationRef/mh:RefToConversation") or request_id
    patient = root.find(".//mh:Patient", NS)
    patient_xml = ET.tostring(patient, encoding="unicode") if patient is not None else ""
    # ElementTree writes the namespace as a prefix: keep the element in the default namespace.
    patient_xml = patient_xml.replace("ns0:", "").replace(f' xmlns:ns0="{MH}"', "")
    foresporsel = root.find(f".//{{{DIALOG_NS}}}Foresporsel")
    tema = ""
    if foresporsel is not None:
        # (An Element without children is falsy: test for None, never with `or`.)
        t = foresporsel.find(f"{{{DIALOG_NS}}}Sporsmal")
        if t is None:
            t = foresporsel.find(f"{{{DIALOG_NS}}}Tema")
        tema = (t.text or "").strip() if t is not None else ""
    reply = ("Svar på forespørsel om medisinske opplysninger. Pasienten har hatt lettere "
             "depressive plager i to år, ingen kjent rusproblematikk, ingen faste medisiner. "
             "Epikrise fra DPS 2024 vedlagt.")
    pdf_b64 = base64.b64encode(pdf_bytes).decode()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<MsgHead xmlns="{MH}">'
        "<MsgInfo>"
        '<Type V="DIALOG_SVAR" DN="Svar"/>'
        "<MIGversion>v1.2 2006-05-24</MIGversion>"
        f"<GenDate>{now()}</GenDate><MsgId>{uuid.uuid4()}</MsgId>"
        '<Ack V="J" DN="Ja"/>'
        f"<ConversationRef><RefToParent>{request_id}</RefToParent>"
        f"<RefToConversation>{conversation}</RefToConversation></ConversationRef>"
        f"<Sender>{organisation(us, gp=True)}</Sender>"
        f"<Receiver>{organisation(them)}</Receiver>"
        f"{patient_xml}"
        "</MsgInfo>"
        "<Document><RefDoc>"
        '<MsgType V="XML" DN="XML-instans"/>'
        "<MimeType>text/xml</MimeType>"
        f'<Content><Dialogmelding xmlns="{DIALOG_NS}">'
        "<Notat>"
        # Code list 9153 as in NHN's own answer samples (V=99 Annen henvendelse).
        '<TemaKodet V="99" S="2.16.578.1.12.4.1.1.9153" DN="Annen henvendelse"/>'
        f"<Tema>{escape(tema or 'Svar på forespørsel')}</Tema>"
        f"<TekstNotatInnhold>{escape(reply)}</TekstNotatInnhold>"
        "</Notat>"
        "</Dialogmelding></Content>"
        "</RefDoc></Document>"
        "<Document><RefDoc>"
        '<MsgType V="A" DN="Vedlegg"/>'
        "<MimeType>application/pdf</MimeType>"
        f"<Description>{escape(pdf_name)}</Description>"
        f'<Content><Base64Container xmlns="{B64_NS}">{pdf_b64}</Base64Container></Content>'
        "</RefDoc></Document>"
        "</MsgHead>\n")


def write_atomically(folder, name, data):
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, "." + name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(folder, name))


def send_validated(args, name, data, schema):
    """Writes data into Samband's in folder only if it validates: (ok, reason)."""
    check = os.path.join(args.out, "taken", "." + name + ".check")
    with open(check, "w", encoding="utf-8") as f:
        f.write(data)
    ok, reason = validate(check, args.xsd, schema)
    os.unlink(check)
    if ok:
        write_atomically(args.inbox, name, data)
    return ok, reason


def handle(path, args, pdf_bytes, log):
    name = os.path.basename(path)
    taken = os.path.join(args.out, "taken")
    os.makedirs(taken, exist_ok=True)
    ok, reason = validate(path, args.xsd)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        log(f"{name}: not well-formed ({e}); no MsgId to answer")
        os.rename(path, os.path.join(taken, name))
        return
    if root.tag != f"{{{MH}}}MsgHead":
        log(f"{name}: not a MsgHead ({root.tag}); kept")
        os.rename(path, os.path.join(taken, name))
        return
    info = root.find("mh:MsgInfo", NS)
    msg_type = info.find("mh:Type", NS).get("V", "")
    msg_id = text(info, "mh:MsgId")
    gen_date = text(info, "mh:GenDate")
    them = party(info, "Sender")
    us = party(info, "Receiver")
    rec = apprec(msg_type, gen_date, msg_id, us, them, ok, reason)
    rec_name = f"apprec-{msg_id}.xml"
    rec_ok, rec_reason = send_validated(args, rec_name, rec, "apprec-v1.1.xsd")
    if not rec_ok:
        log(f"{name}: our own Apprec does not validate ({rec_reason}); nothing sent")
        os.rename(path, os.path.join(taken, name))
        return
    to = us.get("person_name") or us.get("name")
    verdict = "schema valid → Apprec OK" if ok else f"schema INVALID ({reason}) → Apprec Avvist T02"
    log(f"{name}: {msg_type} to {to} (HER {us.get('person_her') or us.get('her')}): {verdict}")
    if ok and msg_type == "DIALOG_FORESPORSEL":
        svar = answer(root, us, them, os.path.basename(args.pdf), pdf_bytes)
        svar_name = f"svar-{msg_id}.xml"
        svar_ok, svar_reason = send_validated(args, svar_name, svar, "all-messages.xsd")
        if not svar_ok:
            log(f"{name}: BUG in the simulated office: its answer does not validate "
                f"({svar_reason}); not sent")
        else:
            log(f"{name}: the GP answers the request: DIALOG_SVAR with {os.path.basename(args.pdf)} "
                f"({len(pdf_bytes)} bytes), RefToParent {msg_id}")
    os.rename(path, os.path.join(taken, name))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="the catalogue folder Samband writes into")
    ap.add_argument("--in", dest="inbox", required=True, help="the folder Samband reads from")
    ap.add_argument("--xsd", required=True, help="the official schemas (all-messages.xsd)")
    ap.add_argument("--pdf", required=True, help="the PDF the GP attaches to an answer")
    ap.add_argument("--log", help="append one line per message here instead of stdout")
    ap.add_argument("--count", type=int, default=0, help="stop after answering N messages")
    ap.add_argument("--poll-ms", type=int, default=100)
    args = ap.parse_args()
    for needed in (os.path.join(args.xsd, "all-messages.xsd"), args.pdf):
        if not os.path.exists(needed):
            sys.exit(f"gp-office: {needed} does not exist")
    with open(args.pdf, "rb") as f:
        pdf_bytes = f.read()
    out = open(args.log, "a", encoding="utf-8") if args.log else sys.stdout

    def log(line):
        print(f"gp-office: {line}", file=out, flush=True)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    os.makedirs(args.out, exist_ok=True)
    os.makedirs(args.inbox, exist_ok=True)
    answered = 0
    log(f"watching {args.out}")
    while running:
        names = sorted(n for n in os.listdir(args.out)
                       if n.endswith(".xml") and not n.startswith(".") and not n.startswith("apprec-"))
        for n in names:
            handle(os.path.join(args.out, n), args, pdf_bytes, log)
            answered += 1
        # Apprecs Samband sends for the GP's answers: read and filed, as a GP system would.
        for n in os.listdir(args.out):
            if n.startswith("apprec-") and n.endswith(".xml"):
                os.makedirs(os.path.join(args.out, "taken"), exist_ok=True)
                ok, reason = validate(os.path.join(args.out, n), args.xsd, "apprec-v1.1.xsd")
                status = ET.parse(os.path.join(args.out, n)).getroot().find(
                    f"{{{APPREC_NS}}}Status")
                log(f"{n}: Samband's receipt for our answer: Status {status.get('V') if status is not None else '?'}"
                    f" ({'schema valid' if ok else 'INVALID: ' + reason})")
                os.rename(os.path.join(args.out, n), os.path.join(args.out, "taken", n))
        if args.count and answered >= args.count:
            break
        time.sleep(args.poll_ms / 1000)
    log("stopped")


if __name__ == "__main__":
    main()
