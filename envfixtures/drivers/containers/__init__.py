"""OCI containers on this machine: the podman CLI (:mod:`.podman`), a registry on loopback (:mod:`.registry`) and
images built from the SHA's tree (:mod:`.images`)."""
