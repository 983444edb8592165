#!/usr/bin/env python3
"""Click-to-dial over a raw AMI socket.

Reproduces: the ViciStack-style "Asterisk AMI commands guide", its Python
click-to-dial client: a plain socket, Login with Events: off, an async
Originate that rings the agent's phone and then dials the customer's number
from the dialplan, the reply read up to the blank line, Logoff.
Changed: host, port and credentials come from the environment (AMI_HOST,
AMI_PORT, AMI_USER, AMI_SECRET; the guide has them inline), and the agent
channel and context are the lab's (Local/200@lab, context lab) instead of a
SIP peer and a VICIdial context. Standard library only.
Written from what the guide is known to contain (its text was not reachable
from here): the structure above, not a byte-for-byte copy.
"""
import os
import socket
import sys

AMI_HOST = os.environ.get("AMI_HOST", "127.0.0.1")
AMI_PORT = int(os.environ.get("AMI_PORT", "5038"))
AMI_USER = os.environ.get("AMI_USER", "admin")
AMI_SECRET = os.environ.get("AMI_SECRET", "adminpass")


def send_action(sock, action):
    """Send one action and return the reply, read up to its blank line."""
    msg = "".join(f"{key}: {value}\r\n" for key, value in action.items()) + "\r\n"
    sock.sendall(msg.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    return response.decode()


def click_to_dial(agent_channel, number, context="lab"):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect((AMI_HOST, AMI_PORT))
    banner = sock.recv(1024).decode()
    print(banner.strip())

    reply = send_action(sock, {
        "Action": "Login",
        "Username": AMI_USER,
        "Secret": AMI_SECRET,
        "Events": "off",
    })
    print(reply.strip())
    if "Success" not in reply:
        print("login failed")
        return False

    reply = send_action(sock, {
        "Action": "Originate",
        "Channel": agent_channel,
        "Context": context,
        "Exten": number,
        "Priority": "1",
        "CallerID": f"Click2Dial <{number}>",
        "Timeout": "30000",
        "Async": "true",
        "ActionID": "c2d-1",
    })
    print(reply.strip())
    ok = "Success" in reply

    reply = send_action(sock, {"Action": "Logoff"})
    print(reply.strip())
    sock.close()
    return ok


if __name__ == "__main__":
    agent = sys.argv[1] if len(sys.argv) > 1 else "Local/200@lab"
    number = sys.argv[2] if len(sys.argv) > 2 else "100"
    sys.exit(0 if click_to_dial(agent, number) else 1)
