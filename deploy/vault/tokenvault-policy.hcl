# Least-privilege Vault policy for tokenvault's KEK provider
# (crypto/kek/hcvault), for transit key "tokenvault" at mount "transit".
# For another mount or key name, edit the paths; nothing else changes.
#
# Capabilities are "update" (POST/PUT) or "read" (GET) only. No "create":
# transit would otherwise create a missing key on first encrypt, hiding a
# misconfiguration. No "delete", no export, backup or restore paths: the key
# never leaves Vault.

# Wrap (single and batch_input), and the second half of a rewrap.
path "transit/encrypt/tokenvault" {
  capabilities = ["update"]
}

# Unwrap, and the first half of a rewrap. (Transit's own rewrap endpoint
# takes no associated_data, so tokenvault does not use it.)
path "transit/decrypt/tokenvault" {
  capabilities = ["update"]
}

# Key metadata (versions, minimums) for health checks, Rotate and Versions.
# It holds no key material.
path "transit/keys/tokenvault" {
  capabilities = ["read"]
}

# Rotate.
path "transit/keys/tokenvault/rotate" {
  capabilities = ["update"]
}

# Retire, step 1: stop decrypting under old versions. Restricted to the two
# version floors: the same endpoint also sets deletion_allowed, exportable
# and allow_plaintext_backup, and the last two cannot be undone.
path "transit/keys/tokenvault/config" {
  capabilities = ["update"]
  allowed_parameters = {
    "min_decryption_version" = []
    "min_encryption_version" = []
  }
}

# Retire, step 2: delete the old versions for good.
path "transit/keys/tokenvault/trim" {
  capabilities = ["update"]
  allowed_parameters = {
    "min_available_version" = []
  }
}

# Token lookup at start-up and renewal while running. Vault's "default"
# policy grants these too; they are listed so that the policy also works for
# tokens created without it (token_no_default_policy).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}

path "auth/token/renew-self" {
  capabilities = ["update"]
}
