"""Let your current public IP reach the RDS instance: one inbound rule, kept up to date.

The original `rds-update-sg-rule` modified a rule you had made by hand in the console
(DB_SG_ID / DB_SG_RULE_ID) and broke with "CIDR block /32 is malformed" whenever GITPOD_IP
was empty. Here the IP is looked up when not given and checked before AWS sees it, and a
missing rule is found by its description or created.
"""

from __future__ import annotations

import ipaddress
import shlex
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cruddur.aws import rds as rds_ops
from cruddur.aws.problems import AwsProblem

CHECKIP_URL = "https://checkip.amazonaws.com"
POSTGRES_PORT = 5432
# The description the original's hand-made rule carried, so an existing setup is found.
DEFAULT_DESCRIPTION = "GITPOD"


def public_ip(url: str = CHECKIP_URL, timeout: float = 5.0) -> str:
    """This machine's public IPv4 address, as AWS's checkip service sees it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            text = reply.read(64).decode("ascii", "replace").strip()
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AwsProblem(
            f"could not find your public IP from {url}: {reason}",
            "pass it yourself: --ip 203.0.113.7 (or set GITPOD_IP)",
        ) from exc
    return checked_ipv4(text, url)


def checked_ipv4(text: str, source: str) -> str:
    """`text` if it is one IPv4 address (what a /32 rule needs), else a clear refusal."""
    try:
        address = ipaddress.IPv4Address(text.strip())
    except ValueError:
        shown = text.strip()[:40] or "nothing"
        raise AwsProblem(
            f"{source} gave {shown!r}, not an IPv4 address",
            "pass one like --ip 203.0.113.7 (an RDS rule for your IP is IPv4 /32)",
        ) from None
    if address.is_unspecified:
        raise AwsProblem(f"{source} gave 0.0.0.0, which is no one's address")
    kind = not_public(address)
    if kind:
        raise AwsProblem(
            f"{source} gave {address}, {kind}: AWS never sees a connection come from it",
            "pass your public IP (what https://checkip.amazonaws.com shows), or neither --ip "
            "nor GITPOD_IP to look it up",
        )
    return str(address)


_PRIVATE = tuple(map(ipaddress.IPv4Network, ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")))
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
# RFC 5737's examples: not routable, but README and the tests use them for "your IP" and
# AWS accepts a rule for them, so they pass (ipaddress calls them private, and not global).
_DOCUMENTATION = tuple(
    map(ipaddress.IPv4Network, ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"))
)


def not_public(address: ipaddress.IPv4Address) -> str | None:
    """The kind of `address` when no connection from the internet can come from it
    (loopback, private, …), or None for a public address or a documentation example."""
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:  # is_global is true for some multicast: asked first
        return "a multicast address"
    if address.is_reserved:  # 240.0.0.0/4, 255.255.255.255 among them
        return "a reserved (or broadcast) address"
    if any(address in network for network in _PRIVATE):
        return "a private (RFC 1918) address"
    if address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if any(address in network for network in _DOCUMENTATION):
        return None
    if not address.is_global:  # 0.0.0.0/8, benchmarking's 198.18.0.0/15, …
        return "a special-purpose address, not a public one"
    return None


def my_ip(given: str | None, env: Mapping[str, str], url: str = CHECKIP_URL) -> tuple[str, str]:
    """(IP, where it came from): --ip, then GITPOD_IP (when not empty), then a lookup."""
    if given:
        return checked_ipv4(given, "--ip"), "--ip"
    if env.get("GITPOD_IP", "").strip():
        return checked_ipv4(env["GITPOD_IP"], "GITPOD_IP"), "GITPOD_IP"
    return public_ip(url), url


@dataclass(frozen=True)
class Rule:
    id: str
    group_id: str
    is_egress: bool
    protocol: str
    from_port: int | None
    to_port: int | None
    cidr: str | None  # IPv4 CIDR; None for rules that name a group, prefix list or IPv6
    description: str

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Rule:
        return cls(
            id=data["SecurityGroupRuleId"],
            group_id=data["GroupId"],
            is_egress=bool(data.get("IsEgress")),
            protocol=str(data.get("IpProtocol", "")),
            from_port=data.get("FromPort"),
            to_port=data.get("ToPort"),
            cidr=data.get("CidrIpv4"),
            description=data.get("Description", "") or "",
        )

    def admits(self, cidr: str, port: int) -> bool:
        return (
            not self.is_egress
            and self.protocol in ("tcp", "6")
            and self.from_port == port
            and self.to_port == port
            and self.cidr == cidr
        )


Action = Literal["modified", "created", "unchanged"]


@dataclass(frozen=True)
class Outcome:
    rule: Rule
    action: Action
    # The rule whose ids to print for next time: always one described --description, None
    # when there is none (a teammate's rule, handed back, was rewritten on the next run).
    keep: Rule | None
    previous_cidr: str | None = None


def rules_of(ec2: Any, group_id: str) -> list[Rule]:
    paginator = ec2.get_paginator("describe_security_group_rules")
    pages = paginator.paginate(Filters=[{"Name": "group-id", "Values": [group_id]}])
    return [Rule.from_api(rule) for page in pages for rule in page["SecurityGroupRules"]]


def get_rule(ec2: Any, rule_id: str) -> Rule:
    from botocore.exceptions import ClientError  # here: `rds allow-my-ip --help` needs none

    try:
        found = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule_id])
    except ClientError as exc:
        if "NotFound" in str(exc.response.get("Error", {}).get("Code", "")):
            raise AwsProblem(
                f"security group rule {rule_id} (--rule-id or DB_SG_RULE_ID) does not exist",
                "give neither --rule-id nor DB_SG_RULE_ID to find the rule by its description "
                "or create one",
            ) from exc
        raise
    return Rule.from_api(found["SecurityGroupRules"][0])


def instance_group(rds: Any, identifier: str) -> tuple[str, int]:
    """The VPC security group of an RDS instance, for when DB_SG_ID is not set, and the
    port the instance listens on (`rds create --port` may have chosen another)."""
    instance = rds_ops.require(rds, identifier)
    groups = [group_id for group_id, _ in instance.security_groups]
    if len(groups) != 1:
        raise AwsProblem(
            f'"{identifier}" has {len(groups)} security groups; say which one to open',
            "set DB_SG_ID=sg-… (or --group-id)",
        )
    return groups[0], instance.port or POSTGRES_PORT


def ingress_permission(cidr: str, port: int, description: str) -> dict[str, Any]:
    """An inbound TCP rule for one port from `cidr`, as EC2's IpPermissions take it."""
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "IpRanges": [{"CidrIp": cidr, "Description": description}],
    }


def _ports(rule: Rule) -> str:
    if rule.protocol in ("-1", "all"):
        return "all traffic"
    low, high = rule.from_port, rule.to_port
    return f"{rule.protocol} {low if low == high else f'{low}-{high}'}"


def _covers(rule: Rule, port: int) -> bool:
    """Whether the rule's ports include `port` (all traffic does)."""
    if rule.protocol in ("-1", "all"):
        return True
    low, high = rule.from_port, rule.to_port
    return low is not None and high is not None and low <= port <= high


def _shape(rule: Rule, port: int) -> str | None:
    """Why an inbound address rule is not one for tcp `port` alone, or None."""
    if rule.protocol not in ("tcp", "6") or not rule.from_port == rule.to_port == port:
        return (
            f"admits {_ports(rule)} ({rule.description or 'no description'}),"
            f" not tcp port {port}: it is not the database's rule, and is left as it is"
        )
    return None


def _refuse_another_shape(rule: Rule, port: int, hint: str) -> None:
    # Rewritten, another service's rule (public HTTPS for a load balancer, say) became the
    # database's, and a range (5432-6000 from a /24) shrank to one port from one address:
    # its ports, sources and purpose gone without a word.
    why = _shape(rule, port)
    if why is not None:
        raise AwsProblem(
            f"rule {rule.id} {why}",
            f"{hint}, or neither to find or make it (--port for another port)",
        )


def _refuse_anothers(rule: Rule, description: str) -> None:
    # A rule described otherwise is someone else's (a teammate's office, say): an old
    # DB_SG_RULE_ID naming it rewrote it to this IP, and locked its owner out.
    shown = repr(rule.description) if rule.description else "nothing"
    raise AwsProblem(
        f"rule {rule.id} is described {shown}, not {description!r}: someone else's rule, "
        "left as it is",
        f"unset DB_SG_RULE_ID (an old export may name it) to find or create the "
        f"{description!r} rule; if the rule is yours, "
        f"--description {shlex.quote(rule.description)}",
    )


def allow_ip(
    ec2: Any,
    *,
    ip: str,
    group_id: str | None,
    rule_id: str | None,
    description: str = DEFAULT_DESCRIPTION,
    port: int = POSTGRES_PORT,
) -> Outcome:
    """Make one inbound rule admit `ip`/32 on `port`: the rule `rule_id` (only when it
    carries `description`), else the group's rule with `description`, else a new one.
    Nothing is sent when a rule admits it already."""
    cidr = f"{ip}/32"
    if rule_id:
        rule: Rule | None = get_rule(ec2, rule_id)
        assert rule is not None
        if group_id and rule.group_id != group_id:
            raise AwsProblem(
                f"rule {rule_id} belongs to {rule.group_id}, not to {group_id} "
                "(--group-id or DB_SG_ID)",
                "fix the group or the rule (--rule-id or DB_SG_RULE_ID; give neither to find "
                "the rule)",
            )
        if rule.is_egress or rule.cidr is None:
            raise AwsProblem(
                f"rule {rule_id} is not an inbound IPv4 address rule",
                "give an inbound rule with a CIDR source (--rule-id or DB_SG_RULE_ID), or neither",
            )
        _refuse_another_shape(rule, port, "give the database's rule (--rule-id or DB_SG_RULE_ID)")
        ours = rule if rule.description == description else None
        if rule.admits(cidr, port):
            return Outcome(rule, "unchanged", keep=ours)
        if ours is None:
            _refuse_anothers(rule, description)
        # Another rule that admits the address already (a teammate's) will do, as it does
        # when the rule is found by description: rewritten to that address, this one was
        # left its duplicate (which EC2 refuses: InvalidPermission.Duplicate).
        others = (r for r in rules_of(ec2, rule.group_id) if not r.is_egress)
        admitting = next((r for r in others if r.admits(cidr, port)), None)
        if admitting is not None:
            return Outcome(admitting, "unchanged", keep=ours)
    else:
        if not group_id:
            raise AwsProblem("no security group given", "set DB_SG_ID=sg-… (or --group-id)")
        rules = [r for r in rules_of(ec2, group_id) if not r.is_egress]
        described = [
            r for r in rules if r.description == description and r.cidr and _covers(r, port)
        ]
        # Of several, the one of the database's shape; another shape is refused below.
        rule = next((r for r in described if _shape(r, port) is None), None)
        # A rule that admits this address already (whatever its description) will do. The
        # described rule was rewritten first: a teammate's rule for the same address was
        # left a duplicate of it and the described rule's own address was lost.
        admitting = next((r for r in rules if r.admits(cidr, port)), None)
        if admitting is not None:
            # The ids printed for next time stay the described rule's (none when there is
            # none): the teammate's, given back as DB_SG_RULE_ID, was rewritten for the
            # next IP.
            ours = admitting if admitting.description == description else rule
            return Outcome(admitting, "unchanged", keep=ours)
        rule = rule or next(iter(described), None)
        if rule is not None:
            _refuse_another_shape(
                rule,
                port,
                "change or remove it in the console, or give another --description "
                "(or --rule-id) for the database's rule",
            )
    if rule is None:
        assert group_id is not None
        reply = ec2.authorize_security_group_ingress(
            GroupId=group_id,
            IpPermissions=[ingress_permission(cidr, port, description)],
        )
        created = Rule.from_api(reply["SecurityGroupRules"][0])
        return Outcome(created, "created", keep=created)
    ec2.modify_security_group_rules(
        GroupId=rule.group_id,
        SecurityGroupRules=[
            {
                "SecurityGroupRuleId": rule.id,
                "SecurityGroupRule": {
                    "IpProtocol": "tcp",
                    "FromPort": port,
                    "ToPort": port,
                    "CidrIpv4": cidr,
                    "Description": description,
                },
            }
        ],
    )
    modified = get_rule(ec2, rule.id)
    return Outcome(modified, "modified", keep=modified, previous_cidr=rule.cidr)
