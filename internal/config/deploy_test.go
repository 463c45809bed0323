package config_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/tokenvault/tokenvault/internal/auth"
	"github.com/tokenvault/tokenvault/internal/config"
)

// TestDeployFilesParse parses every YAML and JSON file under deploy/ (CI
// has no cluster or Docker engine; this catches broken manifests), and
// checks that Kubernetes documents name their apiVersion and kind.
func TestDeployFilesParse(t *testing.T) {
	root := filepath.Join("..", "..", "deploy")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".json":
			n++
			if !json.Valid(b) {
				t.Errorf("%s: invalid JSON", path)
			}
		case ".yaml", ".yml":
			n++
			dec := yaml.NewDecoder(bytes.NewReader(b))
			for i := 0; ; i++ {
				var doc map[string]any
				err := dec.Decode(&doc)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Errorf("%s: document %d: %v", path, i, err)
					break
				}
				if strings.Contains(filepath.ToSlash(path), "/k8s/") && (doc["apiVersion"] == nil || doc["kind"] == nil) {
					t.Errorf("%s: document %d has no apiVersion or kind", path, i)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 7 {
		t.Fatalf("only %d YAML/JSON files found under deploy/", n)
	}
}

// TestDeployConfigsLoad: the config files shipped for Docker and Kubernetes
// are valid tokenvault configurations (strict keys, every value checked).
func TestDeployConfigsLoad(t *testing.T) {
	root := filepath.Join("..", "..", "deploy")
	cm := configMapData(t, filepath.Join(root, "k8s", "configmap.yaml"))
	tmp := filepath.Join(t.TempDir(), "k8s.yaml")
	os.WriteFile(tmp, []byte(cm["tokenvault.yaml"]), 0o600)
	// The replicas' ConfigMap (PostgreSQL store).
	rtmp := filepath.Join(t.TempDir(), "k8s-replicas.yaml")
	os.WriteFile(rtmp, []byte(configMapData(t, filepath.Join(root, "k8s", "replicas", "configmap.yaml"))["tokenvault.yaml"]), 0o600)
	for name, path := range map[string]string{"docker": filepath.Join(root, "docker", "tokenvault.yaml"), "k8s": tmp, "k8s-replicas": rtmp,
		"systemd-replica": filepath.Join(root, "systemd", "tokenvault-replica.yaml")} {
		t.Run(name, func(t *testing.T) {
			// The Vault token and the DSN would come from the environment
			// in production.
			cfg, err := config.Load(path, env(map[string]string{"VAULT_TOKEN": "t", "TOKENVAULT_STORE_POSTGRES_DSN": "host=db dbname=tokenvault",
				"TOKENVAULT_KEK_VAULT_AUTH_ROLE_ID": "r", "TOKENVAULT_KEK_VAULT_AUTH_SECRET_ID": "s"}))
			if err != nil {
				t.Fatal(err)
			}
			if err := config.Validate(&cfg); err != nil {
				t.Fatal(err)
			}
		})
	}
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policy, []byte(cm["policy.yaml"]), 0o600)
	if _, err := auth.LoadPolicyFile(policy); err != nil {
		t.Fatalf("the ConfigMap's policy: %v", err)
	}
}

// configMapData is the data of the ConfigMap in path.
func configMapData(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(b, &cm); err != nil {
		t.Fatal(err)
	}
	return cm.Data
}

// TestReplicasDeploymentStateless: the PostgreSQL-mode Deployment runs
// three replicas with no persistent volume, the DSN from a Secret.
func TestReplicasDeploymentStateless(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "k8s", "replicas", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Kind string `yaml:"kind"`
		Spec struct {
			Replicas int `yaml:"replicas"`
			Template struct {
				Spec struct {
					Containers []struct {
						Env []struct {
							Name      string         `yaml:"name"`
							ValueFrom map[string]any `yaml:"valueFrom"`
						} `yaml:"env"`
					} `yaml:"containers"`
					Volumes []map[string]any `yaml:"volumes"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.Kind != "Deployment" || d.Spec.Replicas != 3 {
		t.Fatalf("kind %q replicas %d, want a Deployment of 3", d.Kind, d.Spec.Replicas)
	}
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v["persistentVolumeClaim"] != nil {
			t.Fatalf("volume %v: the replicas keep no state of their own", v["name"])
		}
	}
	dsn := false
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		dsn = dsn || (e.Name == "TOKENVAULT_STORE_POSTGRES_DSN" && e.ValueFrom["secretKeyRef"] != nil)
	}
	if !dsn {
		t.Fatal("TOKENVAULT_STORE_POSTGRES_DSN does not come from a Secret")
	}
}
