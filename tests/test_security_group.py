"""`cruddur rds allow-my-ip` and bin/rds-update-sg-rule against moto's EC2."""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from helpers import BIN, ROOT, run

from cruddur.aws import client
from cruddur.aws import security_group as sg
from cruddur.aws.problems import AwsProblem
from cruddur.cli import main

CRUDDUR = ROOT / ".venv" / "bin" / "cruddur"


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["rds", "allow-my-ip", *args], env=env)


@pytest.fixture
def group(aws: dict[str, str]) -> str:
    """A new, empty security group in the default VPC."""
    ec2 = client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    made = ec2.create_security_group(GroupName="rds", Description="rds", VpcId=vpc["VpcId"])
    return made["GroupId"]


def add_rule(group_id: str, cidr: str, description: str, port: int = 5432) -> str:
    reply = client("ec2").authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[sg.ingress_permission(cidr, port, description)],
    )
    return reply["SecurityGroupRules"][0]["SecurityGroupRuleId"]


def inbound(group_id: str) -> list[dict[str, Any]]:
    rules = client("ec2").describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [group_id]}]
    )["SecurityGroupRules"]
    return [rule for rule in rules if not rule["IsEgress"]]


def exports(output: str) -> dict[str, str]:
    found = {}
    for line in output.splitlines():
        if line.startswith("export "):
            key, value = line.removeprefix("export ").split("=", 1)
            found[key] = value
    return found


def test_modifies_the_rule_it_is_given(aws: dict[str, str], group: str) -> None:
    rule_id = add_rule(group, "192.0.2.1/32", "GITPOD")
    env = {**aws, "DB_SG_ID": group, "DB_SG_RULE_ID": rule_id}
    result = run(CRUDDUR, "rds", "allow-my-ip", "--ip", "203.0.113.7", env=env)
    assert result.returncode == 0, result.stderr
    assert "192.0.2.1/32 → 203.0.113.7/32" in result.stderr
    rules = inbound(group)
    assert len(rules) == 1
    assert rules[0]["SecurityGroupRuleId"] == rule_id
    assert rules[0]["CidrIpv4"] == "203.0.113.7/32"
    assert (rules[0]["IpProtocol"], rules[0]["FromPort"], rules[0]["ToPort"]) == ("tcp", 5432, 5432)
    assert rules[0]["Description"] == "GITPOD"
    assert exports(result.stdout) == {"DB_SG_ID": group, "DB_SG_RULE_ID": rule_id}


def test_a_rule_given_for_another_port_is_left_as_it_is(aws: dict[str, str], group: str) -> None:
    # It was rewritten to admit one address on 5432: the load balancer's public HTTPS
    # rule gone, and the message said nothing of 443.
    rule_id = add_rule(group, "0.0.0.0/0", "public HTTPS for the ALB", port=443)
    result = cli("--ip", "203.0.113.7", env={"DB_SG_ID": group, "DB_SG_RULE_ID": rule_id})
    assert result.exit_code == 1
    refusal = f"rule {rule_id} admits tcp 443 (public HTTPS for the ALB), not tcp port 5432"
    assert refusal in result.stderr, result.stderr
    assert [(r["FromPort"], r["CidrIpv4"], r["Description"]) for r in inbound(group)] == [
        (443, "0.0.0.0/0", "public HTTPS for the ALB")
    ]


def test_a_gitpod_rule_of_another_shape_is_left_as_it_is(aws: dict[str, str], group: str) -> None:
    # Found by its description, it was narrowed to tcp 5432-5432 from one /32 without a word.
    client("ec2").authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 6000,
                "IpRanges": [{"CidrIp": "192.0.2.0/24", "Description": "GITPOD"}],
            }
        ],
    )
    result = cli("--ip", "203.0.113.9", env={"DB_SG_ID": group})
    assert result.exit_code == 1
    assert "admits tcp 5432-6000 (GITPOD), not tcp port 5432" in result.stderr, result.stderr
    assert "another --description" in result.stderr
    assert [(r["FromPort"], r["ToPort"], r["CidrIpv4"]) for r in inbound(group)] == [
        (5432, 6000, "192.0.2.0/24")
    ]
    # A port outside its range is no concern of that rule's: a rule is created for it.
    other = cli("--ip", "203.0.113.9", "--port", "6001", env={"DB_SG_ID": group})
    assert other.exit_code == 0 and "created rule" in other.stderr, other.stderr
    assert len(inbound(group)) == 2


def test_finds_the_rule_by_description(aws: dict[str, str], group: str) -> None:
    other = add_rule(group, "192.0.2.50/32", "office")
    mine = add_rule(group, "192.0.2.1/32", "GITPOD")
    result = cli("--ip", "203.0.113.7", env={"DB_SG_ID": group, "GITPOD_IP": "198.51.100.1"})
    assert result.exit_code == 0, result.stderr
    by_id = {rule["SecurityGroupRuleId"]: rule["CidrIpv4"] for rule in inbound(group)}
    assert by_id == {other: "192.0.2.50/32", mine: "203.0.113.7/32"}  # --ip beat GITPOD_IP
    assert exports(result.output)["DB_SG_RULE_ID"] == mine


def test_creates_the_rule_when_there_is_none(aws: dict[str, str], group: str) -> None:
    add_rule(group, "192.0.2.50/32", "office")
    result = cli(env={"DB_SG_ID": group, "GITPOD_IP": "203.0.113.9"})
    assert result.exit_code == 0, result.stderr
    assert "from GITPOD_IP" in result.stderr
    new_id = exports(result.output)["DB_SG_RULE_ID"]
    rule = next(r for r in inbound(group) if r["SecurityGroupRuleId"] == new_id)
    assert rule["CidrIpv4"] == "203.0.113.9/32"
    assert (rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) == ("tcp", 5432, 5432)
    assert rule["Description"] == "GITPOD"
    assert len(inbound(group)) == 2
    assert "keep these ids" in result.stderr


def test_leaves_a_rule_that_already_admits_the_ip_alone(aws: dict[str, str], group: str) -> None:
    # Described otherwise, so a modification would show (it would set the description).
    rule_id = add_rule(group, "203.0.113.7/32", "my laptop")
    for env in ({"DB_SG_ID": group}, {"DB_SG_ID": group, "DB_SG_RULE_ID": rule_id}):
        result = cli("--ip", "203.0.113.7", env=env)
        assert result.exit_code == 0, result.stderr
        assert "nothing to change" in result.stderr
        # Not the GITPOD rule: its id is not handed back to be rewritten next time.
        assert exports(result.output) == {"DB_SG_ID": group}
        assert f"no DB_SG_RULE_ID printed: rule {rule_id} is described 'my laptop'" in (
            result.stderr
        )
    rules = inbound(group)
    assert [(r["SecurityGroupRuleId"], r["Description"]) for r in rules] == [(rule_id, "my laptop")]


def test_a_teammates_rule_for_the_ip_leaves_the_gitpod_rule_alone(
    aws: dict[str, str], group: str
) -> None:
    # The GITPOD rule was rewritten to the address the office rule admits already: the
    # GITPOD rule's own address lost, and two identical rules left.
    mine = add_rule(group, "198.51.100.9/32", "GITPOD")
    office = add_rule(group, "203.0.113.50/32", "office")
    result = cli("--ip", "203.0.113.50", env={"DB_SG_ID": group})
    assert result.exit_code == 0, result.stderr
    assert f"rule {office} in {group} already admits 203.0.113.50/32" in result.stderr
    assert "nothing to change" in result.stderr
    by_id = {r["SecurityGroupRuleId"]: (r["CidrIpv4"], r["Description"]) for r in inbound(group)}
    assert by_id == {mine: ("198.51.100.9/32", "GITPOD"), office: ("203.0.113.50/32", "office")}
    # The ids kept for next time are the GITPOD rule's: the office rule's would be rewritten.
    assert exports(result.output)["DB_SG_RULE_ID"] == mine


def test_a_teammates_rule_is_never_handed_back_nor_rewritten(
    aws: dict[str, str], group: str
) -> None:
    # With no GITPOD rule, the teammate's rule for the same address was printed as
    # DB_SG_RULE_ID, and the next run (another IP) rewrote it: the teammate locked out.
    _instance(group, identifier="db1")
    alice = add_rule(group, "203.0.113.7/32", "alice-office")
    first = cli("--identifier", "db1", "--ip", "203.0.113.7")
    assert first.exit_code == 0, first.stderr
    assert "nothing to change" in first.stderr
    kept = exports(first.stdout)
    assert kept == {"DB_SG_ID": group}
    assert f"no DB_SG_RULE_ID printed: rule {alice} is described 'alice-office'" in first.stderr
    # The next IP, with what the first run printed: a GITPOD rule of its own.
    second = cli("--identifier", "db1", "--ip", "198.51.100.9", env=kept)
    assert second.exit_code == 0, second.stderr
    assert "created rule" in second.stderr
    mine = exports(second.stdout)["DB_SG_RULE_ID"]
    # An old export that still names the teammate's rule: refused, by name.
    stale = cli("--identifier", "db1", "--ip", "198.51.100.10",
                env={"DB_SG_ID": group, "DB_SG_RULE_ID": alice})  # fmt: skip
    assert stale.exit_code == 1
    assert f"rule {alice} is described 'alice-office', not 'GITPOD'" in stale.stderr
    assert "unset DB_SG_RULE_ID" in stale.stderr
    assert "export" not in stale.stdout
    by_id = {r["SecurityGroupRuleId"]: (r["CidrIpv4"], r["Description"]) for r in inbound(group)}
    assert by_id == {
        alice: ("203.0.113.7/32", "alice-office"),
        mine: ("198.51.100.9/32", "GITPOD"),
    }


def _instance(group: str, identifier: str = "cruddur-db-instance", **options: object) -> None:
    """The original's instance, in moto, behind `group`."""
    client("rds").create_db_instance(
        DBInstanceIdentifier=identifier,
        DBInstanceClass="db.t3.micro",
        Engine="postgres",
        MasterUsername="cruddurroot",
        MasterUserPassword="right-password",
        VpcSecurityGroupIds=[group],
        **options,
    )


def test_uses_the_instances_group_when_none_is_set(aws: dict[str, str], group: str) -> None:
    _instance(group)
    result = cli("--ip", "203.0.113.7")
    assert result.exit_code == 0, result.stderr
    assert f"security group {group} of cruddur-db-instance" in result.stderr
    assert [r["CidrIpv4"] for r in inbound(group)] == ["203.0.113.7/32"]
    missing = cli("--ip", "203.0.113.7", "--identifier", "no-such-db")
    assert missing.exit_code == 1
    assert 'no RDS instance "no-such-db"' in missing.stderr


def test_admits_the_port_the_instance_listens_on(aws: dict[str, str], group: str) -> None:
    # `rds create --port 5433` made an instance that the rule for 5432 never let in.
    _instance(group, Port=5433)
    result = cli("--ip", "203.0.113.7")
    assert result.exit_code == 0, result.stderr
    assert "203.0.113.7/32 on port 5433" in result.stderr
    assert [(r["FromPort"], r["ToPort"]) for r in inbound(group)] == [(5433, 5433)]
    # A port given explicitly still wins.
    other = cli("--ip", "203.0.113.8", "--port", "6000", "--description", "other")
    assert other.exit_code == 0 and "on port 6000" in other.stderr
    # The next workspace start, the ids exported by the first run (as `eval` keeps them):
    # the same rule, the new IP, the instance's port. It was refused ("admits tcp 5433,
    # not tcp port 5432"), and with DB_SG_ID alone a useless rule for 5432 was made.
    kept = exports(result.stdout)
    again = cli("--ip", "198.51.100.7", env=kept)
    assert again.exit_code == 0, again.stderr
    assert "203.0.113.7/32 → 198.51.100.7/32 on port 5433" in again.stderr
    alone = cli("--ip", "198.51.100.8", env={"DB_SG_ID": group})
    assert alone.exit_code == 0 and "198.51.100.8/32 on port 5433" in alone.stderr, alone.stderr
    assert 5432 not in {r["FromPort"] for r in inbound(group)}
    # An instance that cannot be looked up: 5432, as before.
    unknown = cli("--ip", "203.0.113.9", "--description", "third", "--identifier", "no-such-db",
                  env={"DB_SG_ID": group})  # fmt: skip
    assert unknown.exit_code == 0 and "on port 5432" in unknown.stderr, unknown.stderr


def test_refuses_what_is_not_an_ipv4_address(aws: dict[str, str], group: str) -> None:
    for bad in ["", "203.0.113", "2001:db8::1", "203.0.113.7/32", "0.0.0.0"]:
        args = ("--ip", bad) if bad else ()
        # An empty --ip or GITPOD_IP means "look it up": give GITPOD_IP nonsense instead.
        env = {"DB_SG_ID": group, "GITPOD_IP": bad or "not-an-ip"}
        result = cli(*args, env=env)
        assert result.exit_code == 1, bad
        assert "not an IPv4 address" in result.stderr or "no one's address" in result.stderr
    assert inbound(group) == []


def test_refuses_addresses_no_connection_comes_from(aws: dict[str, str], group: str) -> None:
    # They were written into the group as if they were this machine's public address.
    kinds = {
        "127.0.0.1": "a loopback address",
        "10.1.2.3": "a private (RFC 1918) address",
        "192.168.0.9": "a private (RFC 1918) address",
        "169.254.169.254": "a link-local address",
        "224.0.0.251": "a multicast address",
        "255.255.255.255": "a reserved (or broadcast) address",
        "100.64.0.1": "a shared (carrier-grade NAT) address",
        "198.18.0.1": "a special-purpose address",
    }
    for bad, kind in kinds.items():
        result = cli("--ip", bad, env={"DB_SG_ID": group})
        assert result.exit_code == 1, bad
        assert f"--ip gave {bad}, {kind}" in result.stderr, result.stderr
    assert "GITPOD_IP gave 10.0.0.5, a private" in cli(env={"GITPOD_IP": "10.0.0.5"}).stderr
    assert inbound(group) == []
    # A public address, and the documentation ranges README and these tests use, pass.
    for good in ("52.94.76.1", "192.0.2.9", "198.51.100.9", "203.0.113.9"):
        assert sg.checked_ipv4(good, "--ip") == good


def test_refuses_a_rule_of_another_group_or_none_at_all(aws: dict[str, str], group: str) -> None:
    rule_id = add_rule(group, "192.0.2.1/32", "GITPOD")
    default = client("ec2").describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
    wrong = cli(
        "--ip", "203.0.113.7", env={"DB_SG_ID": default["GroupId"], "DB_SG_RULE_ID": rule_id}
    )
    assert wrong.exit_code == 1
    assert f"belongs to {group}" in wrong.stderr
    missing = cli("--ip", "203.0.113.7", env={"DB_SG_RULE_ID": "sgr-0123456789abcdef0"})
    assert missing.exit_code == 1
    assert "does not exist" in missing.stderr
    assert "give neither --rule-id nor DB_SG_RULE_ID" in missing.stderr
    assert inbound(group)[0]["CidrIpv4"] == "192.0.2.1/32"


def test_bin_script_runs_from_anywhere(aws: dict[str, str], group: str) -> None:
    result = run("rds-update-sg-rule", "--ip", "203.0.113.7", env={**aws, "DB_SG_ID": group})
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("== rds-update-sg-rule")
    assert [r["CidrIpv4"] for r in inbound(group)] == ["203.0.113.7/32"]
    helped = run("rds-update-sg-rule", "--help")
    assert re.search(r"Usage: \S*cruddur rds allow-my-ip", helped.stdout)
    # The original's .gitpod.yml `source`d it: that must not end the calling shell.
    sourced = run(
        "/bin/bash",
        "-c",
        f"source {BIN}/rds-update-sg-rule --ip 203.0.113.8; echo shell-still-here",
        env={**aws, "DB_SG_ID": group},
    )
    assert "shell-still-here" in sourced.stdout, sourced.stderr


# -- finding the public IP ---------------------------------------------------------


@pytest.fixture
def checkip() -> Iterator[tuple[str, list[bytes]]]:
    """A local stand-in for checkip.amazonaws.com; the test sets what it answers."""
    answers = [b"203.0.113.42\n"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(answers[0])

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/", answers
    server.shutdown()
    server.server_close()


def test_public_ip_is_looked_up_and_checked(checkip: tuple[str, list[bytes]]) -> None:
    url, answers = checkip
    assert sg.my_ip(None, {}, url) == ("203.0.113.42", url)
    assert sg.my_ip(None, {"GITPOD_IP": "  "}, url) == ("203.0.113.42", url)  # empty: look up
    assert sg.my_ip(None, {"GITPOD_IP": "198.51.100.1"}, url)[0] == "198.51.100.1"
    answers[0] = b"<html>rate limited</html>"
    with pytest.raises(AwsProblem, match="not an IPv4 address"):
        sg.public_ip(url)


def test_an_unreachable_lookup_says_how_to_give_the_ip() -> None:
    with pytest.raises(AwsProblem) as caught:
        sg.public_ip("http://127.0.0.1:9/", timeout=2)
    assert "could not find your public IP" in caught.value.message
    assert "--ip" in (caught.value.hint or "")


def test_a_blank_description_is_refused_and_an_undescribed_rule_kept(
    aws: dict[str, str], group: str
) -> None:
    # A rule made in the console often has no description: a blank --description found
    # it and rewrote it to your IP, shutting its owner out.
    client("ec2").authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 5432,
                "ToPort": 5432,
                "IpRanges": [{"CidrIp": "192.0.2.50/32"}],
            }
        ],
    )
    for blank in ("", "  "):
        result = cli("--ip", "198.51.100.77", "--description", blank, env={"DB_SG_ID": group})
        assert result.exit_code == 2, result.output
        assert "must not be blank" in result.stderr
    assert [r["CidrIpv4"] for r in inbound(group)] == ["192.0.2.50/32"]


def test_a_given_rule_is_not_made_a_duplicate_of_anothers(aws: dict[str, str], group: str) -> None:
    # With DB_SG_RULE_ID, the rule was rewritten to an address a teammate's rule admits
    # already: two identical rules (EC2 refuses that), and the rule's own address lost.
    ours = add_rule(group, "203.0.113.5/32", sg.DEFAULT_DESCRIPTION)
    add_rule(group, "198.51.100.1/32", "teammate")
    result = cli("--ip", "198.51.100.1", env={"DB_SG_ID": group, "DB_SG_RULE_ID": ours})
    assert result.exit_code == 0, result.output
    assert "already admits 198.51.100.1/32" in result.stderr, result.stderr
    assert exports(result.stdout)["DB_SG_RULE_ID"] == ours
    assert sorted(r["CidrIpv4"] for r in inbound(group)) == ["198.51.100.1/32", "203.0.113.5/32"]
