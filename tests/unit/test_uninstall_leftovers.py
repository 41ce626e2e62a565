"""A namespace an uninstall cannot remove: the objects in it holding finalizers are named (issue 13 part 6)."""

from __future__ import annotations

from knfleet.kube.client import Resource
from knfleet.run import uninstall

TERMINATING = {
    "kind": "Namespace", "metadata": {"name": "knative-serving"}, "spec": {"finalizers": ["kubernetes"]},
    "status": {"phase": "Terminating", "conditions": [
        {"type": "NamespaceContentRemaining", "status": "True",
         "message": "Some resources are remaining: configmaps. has 1 resource instances, leases.coordination.k8s.io "
                    "has 2 resource instances"},
        {"type": "NamespaceFinalizersRemaining", "status": "True",
         "message": "Some content in the namespace has finalizers remaining: knfleet.test/hold in 1 resource "
                    "instances"}]}}


class FakeCluster:
    def discovery(self):
        return {("v1", "ConfigMap"): Resource("", "v1", "configmaps", "ConfigMap", True),
                ("coordination.k8s.io/v1", "Lease"): Resource("coordination.k8s.io", "v1", "leases", "Lease", True)}

    def list(self, api_version, kind, namespace=None, selector=None):
        if kind == "ConfigMap":
            return [{"kind": "ConfigMap", "metadata": {"name": "held", "namespace": "knative-serving",
                                                       "finalizers": ["knfleet.test/hold"]}},
                    {"kind": "ConfigMap", "metadata": {"name": "free", "namespace": "knative-serving"}}]
        return [{"kind": "Lease", "metadata": {"name": "l"}}]


def test_a_terminating_namespace_names_the_objects_holding_finalizers():
    assert uninstall.held_in_namespace(FakeCluster(), TERMINATING) == [
        "ConfigMap knative-serving/held holds finalizers ['knfleet.test/hold']"]
    (line,) = uninstall.left_named([TERMINATING], FakeCluster())
    assert line.startswith("Namespace knative-serving") and "ConfigMap knative-serving/held holds finalizers" in line


def test_without_the_content_condition_the_controllers_words_are_given():
    ns = {**TERMINATING, "status": {"conditions": [TERMINATING["status"]["conditions"][1]]}}
    assert uninstall.held_in_namespace(FakeCluster(), ns) == [
        "Some content in the namespace has finalizers remaining: knfleet.test/hold in 1 resource instances"]


CRD = {"kind": "CustomResourceDefinition",
       "metadata": {"name": "ingresses.networking.internal.knative.dev", "deletionTimestamp": "2026-11-26T00:00:00Z",
                    "finalizers": ["customresourcecleanup.apiextensions.k8s.io"]},
       "spec": {"group": "networking.internal.knative.dev", "names": {"kind": "Ingress"},
                "versions": [{"name": "v1alpha1", "storage": True}]}}


class Ingresses:
    def __init__(self):
        self.asked: list[tuple[str, str]] = []

    def list(self, api_version, kind, namespace=None, selector=None):
        self.asked.append((api_version, kind))
        return [{"kind": "Ingress", "metadata": {"name": "svc", "namespace": "m",
                                                 "finalizers": ["ingresses.networking.internal.knative.dev"]}},
                {"kind": "Ingress", "metadata": {"name": "free", "namespace": "m"}}]


def test_a_crd_being_deleted_names_its_objects_holding_finalizers():
    cluster = Ingresses()
    assert uninstall.held_by_crd(cluster, CRD) == [
        "Ingress m/svc holds finalizers ['ingresses.networking.internal.knative.dev']"]
    assert cluster.asked == [("networking.internal.knative.dev/v1alpha1", "Ingress")]
    (line,) = uninstall.left_named([CRD], cluster)
    assert "(finalizers ['customresourcecleanup.apiextensions.k8s.io']); Ingress m/svc holds" in line
    # A CRD not being deleted is not held by anything: nothing is listed.
    live = {**CRD, "metadata": {"name": CRD["metadata"]["name"]}}
    assert uninstall.held_by_crd(cluster, live) == [] and len(cluster.asked) == 2


def _obj(kind, name, uid, owner=None, deleting=False):
    meta = {"name": name, "namespace": "m", "uid": uid}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "serving.knative.dev/v1", "kind": owner[0], "uid": owner[1]}]
    if deleting:
        meta["deletionTimestamp"] = "2026-11-26T00:00:00Z"
    return {"kind": kind, "metadata": meta}


class Knative:
    def __init__(self, objects):
        self.objects = objects

    def has(self, api_version, kind):
        return True

    def list_many(self, keys):
        pass

    def list(self, api_version, kind, namespace=None, selector=None):
        return [o for o in self.objects if o["kind"] == kind and (o.get("apiVersion", api_version) == api_version)]


def test_still_deleting_finds_objects_marked_for_deletion_and_orphans_of_knative_owners():
    # An uninstall killed after it deleted the Service: the Route is an orphan the garbage collector will delete,
    # the Ingress is marked for deletion and waits for net-kourier's finalizer; the other service is whole.
    objects = [_obj("Route", "gone", "r1", owner=("Service", "s-deleted")),
               {**_obj("Ingress", "gone", "i1", owner=("Route", "r1"), deleting=True)},
               _obj("Service", "kept", "s2"),
               _obj("Route", "kept", "r2", owner=("Service", "s2")),
               _obj("Configuration", "kept", "c2", owner=("Service", "s2")),
               _obj("Revision", "kept-00001", "v2", owner=("Configuration", "c2"))]
    names = sorted(f"{o['kind']} {o['metadata']['name']}" for o in uninstall.still_deleting(Knative(objects)))
    assert names == ["Ingress gone", "Route gone"]
    whole = [o for o in objects if "gone" not in o["metadata"]["name"]]
    assert uninstall.still_deleting(Knative(whole)) == []
    # A DomainMapping's Ingress and Certificate have a live owner: not orphans.
    mapped = [*whole, _obj("DomainMapping", "chat.example.com", "d1"),
              _obj("Ingress", "chat.example.com", "i2", owner=("DomainMapping", "d1")),
              _obj("Certificate", "chat.example.com", "c3", owner=("DomainMapping", "d1"))]
    assert uninstall.still_deleting(Knative(mapped)) == []
