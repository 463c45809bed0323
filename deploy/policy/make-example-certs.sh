#!/usr/bin/env bash
# Makes an example PKI for trying mutual TLS by hand (NOT for production:
# use your organisation's CA, SPIRE, cert-manager or step-ca there):
#   ca.pem / ca-key.pem          the CA (--tls-client-ca, and the clients' --ca)
#   server.pem / server-key.pem  for localhost and 127.0.0.1 (--tls-cert/--tls-key)
#   <service>.pem / -key.pem     client certificates whose URI SANs are the
#                                SPIFFE ids in tokenvault-policy.yaml
# Usage: bash deploy/policy/make-example-certs.sh [DIR]   (default ./pki)
set -euo pipefail
dir=${1:-pki}
mkdir -p "$dir"
cd "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
	-keyout ca-key.pem -out ca.pem -subj "/CN=tokenvault example CA" 2>/dev/null
# cert NAME SAN EKU: a P-256 key and a 90-day certificate signed by the CA.
cert() {
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1-key.pem" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
	printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 90 \
		-extfile "$1.ext" -out "$1.pem" 2>/dev/null
	rm "$1.csr" "$1.ext"
}
cert server "DNS:localhost,IP:127.0.0.1" serverAuth
for sa in orders payments fulfilment support-ui; do
	cert "$sa" "URI:spiffe://example.org/ns/shop/sa/$sa" clientAuth
done
cert key-admin "URI:spiffe://example.org/ns/ops/sa/key-admin" clientAuth
cert privacy-ops "DNS:privacy-ops.internal.example.org" clientAuth
chmod 600 ./*-key.pem
echo "wrote $(pwd)"
