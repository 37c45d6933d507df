#!/usr/bin/env python3
"""The official Kubernetes Python client against the simulated API server.

Usage: python_client.py KUBECONFIG NODE

Drives: list nodes, create a pod, watch it (the initial ADDED event), a patch carrying a stale
resourceVersion (must be 409 Conflict), a patch carrying the current one (must succeed and bump
it), the client's default (strategic-merge) patch setting and then deleting an annotation, events
listed by field selector, and delete (then 404). Prints one line per step; exits 1 naming the
first step that failed.
"""
import sys

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

POD = "py-client-pod"


def fail(step, detail):
    print(f"FAIL {step}: {detail}")
    sys.exit(1)


def main():
    kubeconfig, node = sys.argv[1], sys.argv[2]
    config.load_kube_config(config_file=kubeconfig)
    v1 = client.CoreV1Api()

    names = [n.metadata.name for n in v1.list_node().items]
    if node not in names:
        fail("list nodes", f"{node} not in {names}")
    print(f"ok list nodes: {names}")

    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name=POD),
        spec=client.V1PodSpec(
            scheduler_name="nobody",
            containers=[
                client.V1Container(
                    name="c",
                    image="registry.k8s.io/pause:3.9",
                    resources=client.V1ResourceRequirements(
                        limits={"nvidia.com/gpu": "1", "nvidia.com/gpumem": "3000"}
                    ),
                )
            ],
        ),
    )
    created = v1.create_namespaced_pod("default", pod)
    uid = created.metadata.uid
    if created.metadata.name != POD or not uid:
        fail("create", f"came back as {created.metadata.name} uid {uid}")
    if created.spec.containers[0].resources.limits.get("nvidia.com/gpu") != "1":
        fail("create", f"limits {created.spec.containers[0].resources.limits}")
    print(f"ok create: {POD} uid {uid}")

    seen = []
    w = watch.Watch()
    for event in w.stream(
        v1.list_namespaced_pod,
        "default",
        field_selector=f"metadata.name={POD}",
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["object"].metadata.name))
        w.stop()
    if not seen or seen[0] != ("ADDED", POD):
        fail("watch", f"expected an ADDED event for {POD}, saw {seen}")
    print(f"ok watch: {seen[0][0]} {seen[0][1]}")

    current = v1.read_node(node).metadata.resource_version
    try:
        v1.patch_node(
            node,
            {"metadata": {"resourceVersion": "1", "annotations": {"py-stale": "x"}}},
        )
        fail("stale patch", "a patch with resourceVersion 1 was accepted")
    except ApiException as e:
        if e.status != 409:
            fail("stale patch", f"status {e.status}, expected 409: {e.body}")
    if "py-stale" in (v1.read_node(node).metadata.annotations or {}):
        fail("stale patch", "the refused patch was applied")
    print("ok stale resourceVersion: 409 Conflict, nothing applied")

    after = v1.patch_node(
        node, {"metadata": {"resourceVersion": current, "annotations": {"py-rv": "1"}}}
    )
    if after.metadata.resource_version == current:
        fail("current patch", "the resourceVersion did not change")
    print(f"ok current resourceVersion: {current} -> {after.metadata.resource_version}")

    # The client's default patch type for a dict body is strategic merge.
    v1.patch_node(node, {"metadata": {"annotations": {"py-smp": "set"}}})
    got = v1.read_node(node).metadata.annotations or {}
    if got.get("py-smp") != "set" or got.get("py-rv") != "1":
        fail("strategic merge patch", f"annotations {got}")
    v1.patch_node(node, {"metadata": {"annotations": {"py-smp": None}}})
    got = v1.read_node(node).metadata.annotations or {}
    if "py-smp" in got:
        fail("strategic merge patch", f"null did not delete: {got}")
    print("ok strategic merge patch: set, then deleted with null")

    for name, about in [("py-event-1", POD), ("py-event-2", "someone-else")]:
        v1.create_namespaced_event(
            "default",
            client.CoreV1Event(
                metadata=client.V1ObjectMeta(name=name),
                involved_object=client.V1ObjectReference(
                    kind="Pod", name=about, namespace="default", uid=uid
                ),
                reason="FilteringSucceed",
                message=f"about {about}",
                type="Normal",
            ),
        )
    mine = v1.list_namespaced_event(
        "default", field_selector=f"involvedObject.name={POD}"
    ).items
    if [e.metadata.name for e in mine] != ["py-event-1"]:
        fail("events by field selector", f"{[e.metadata.name for e in mine]}")
    both = v1.list_namespaced_event(
        "default",
        field_selector=f"involvedObject.name={POD},involvedObject.namespace=default,involvedObject.uid={uid}",
    ).items
    if [e.metadata.name for e in both] != ["py-event-1"]:
        fail("events by three field selectors", f"{[e.metadata.name for e in both]}")
    print("ok events by field selector")

    v1.delete_namespaced_pod(POD, "default")
    try:
        v1.read_namespaced_pod(POD, "default")
        fail("delete", f"{POD} still exists")
    except ApiException as e:
        if e.status != 404:
            fail("delete", f"status {e.status}, expected 404")
    print("ok delete: then 404")
    print("ALL OK")


if __name__ == "__main__":
    main()
