package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/outpost-mesh/outpost/internal/cli"
	"github.com/outpost-mesh/outpost/node"
	"github.com/outpost-mesh/outpost/node/keys"
)

// masterKey loads the master key from file, or OUTPOST_MASTER_KEY.
func masterKey(file string) (*keys.Protector, error) {
	kp, err := keys.LoadMaster(keys.Source{File: file, Env: "OUTPOST_MASTER_KEY"}, keys.Source{})
	if errors.Is(err, keys.ErrNoKey) {
		// LoadMaster's hint names the node's config field; these commands
		// take a flag.
		return nil, fmt.Errorf("%w: pass --master-key-file FILE (the file the nodes' keys.master_key_file names) or set OUTPOST_MASTER_KEY; make a new one with `outpost keys generate > master.key`", keys.ErrNoKey)
	}
	return kp, err
}

// withMasterKeyFile is --master-key-file.
func withMasterKeyFile(c *cobra.Command, file *string) {
	c.Flags().StringVar(file, "master-key-file", "", "the master key `FILE` (default: OUTPOST_MASTER_KEY)")
}

func keygenCommand(stdout, stderr io.Writer) *cobra.Command {
	var out, mk string
	c := &cobra.Command{
		Use:   "keygen [--out FILE] [--master-key-file FILE]",
		Short: "A new gossip key: printed, or written wrapped by the master key",
		Long: `Make a new gossip encryption key (32 random bytes, base64). Without --out it
is printed, for OUTPOST_GOSSIP_KEY; with --out it is written wrapped by the
master key, ready for gossip.key_file. Use the same key on every node.`,
		Example: "  outpost keygen --out gossip.key --master-key-file master.key\n  export OUTPOST_GOSSIP_KEY=$(outpost keygen 2>/dev/null)",
		RunE: func(*cobra.Command, []string) error {
			k := make([]byte, 32)
			_, _ = rand.Read(k)
			enc := base64.StdEncoding.EncodeToString(k)
			if out == "" {
				fmt.Fprintln(stdout, enc)
				// A node refuses this key in gossip.key_file: files hold
				// secrets wrapped by the master key.
				fmt.Fprintln(stderr, "outpost keygen: printed an unwrapped key, for OUTPOST_GOSSIP_KEY; for gossip.key_file write a wrapped one with `outpost keygen --out gossip.key --master-key-file master.key`")
				return nil
			}
			kp, err := masterKey(mk)
			if err != nil {
				return err
			}
			if err := keys.WriteFile(kp, out, node.PurposeGossipKey, []byte(enc)); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote a gossip key to %s, wrapped by master key %s; copy it to every node (gossip.key_file)\n", out, kp.KeyID())
			return nil
		},
	}
	c.Flags().StringVar(&out, "out", "", "write the key wrapped by the master key to this `FILE` (gossip.key_file)")
	withMasterKeyFile(c, &mk)
	return c
}

func keysCommand(stdin io.Reader, stdout io.Writer) *cobra.Command {
	grp := cli.Group("keys <command>", "The master key: generate one, wrap secrets with it",
		"  outpost keys generate > master.key\n  outpost keys wrap --purpose oidc_client_secret --in oidc.secret --out oidc.secret")
	generate := &cobra.Command{
		Use:   "generate",
		Short: "Print a new master key",
		Long: `Print a new master key (base64 of 32 random bytes). Store it with mode 0600
and point keys.master_key_file at it, or put it in OUTPOST_MASTER_KEY. Every
node of a region uses the same key.`,
		Example: "  (umask 077; outpost keys generate > /etc/outpost/master.key)\n  export OUTPOST_MASTER_KEY=$(outpost keys generate)",
		RunE: func(*cobra.Command, []string) error {
			k, err := keys.GenerateKey()
			if err != nil {
				return err
			}
			fmt.Fprintln(stdout, k)
			return nil
		},
	}
	var purpose, in, out, mk string
	wrap := &cobra.Command{
		Use:   "wrap --purpose P --in FILE --out FILE [--master-key-file FILE]",
		Short: "Wrap a secret file with the master key",
		Long: `Wrap an existing secret file (a CA key, a gossip key, an OIDC client secret)
with the master key, in place when --in and --out are the same file; --in -
reads standard input.`,
		Example: "  outpost keys wrap --purpose oidc_client_secret --in oidc.secret --out oidc.secret\n  outpost keys wrap --purpose ca_key --in ca.key --out ca.key --master-key-file master.key",
		RunE: func(*cobra.Command, []string) error {
			switch purpose {
			case "ca_key", node.PurposeGossipKey, node.PurposeOIDCSecret:
			default:
				return cli.Usagef("--purpose must be ca_key, gossip_key or oidc_client_secret")
			}
			if in == "" || out == "" {
				return cli.Usagef("--in and --out are required")
			}
			kp, err := masterKey(mk)
			if err != nil {
				return err
			}
			var data []byte
			if in == "-" {
				data, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
			} else {
				data, err = os.ReadFile(in)
			}
			if err != nil {
				return err
			}
			if keys.IsWrapped(data) {
				return fmt.Errorf("%s is already wrapped", in)
			}
			if err := keys.WriteFile(kp, out, purpose, data); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrapped %s into %s (purpose %s, master key %s)\n", in, out, purpose, kp.KeyID())
			return nil
		},
	}
	wrap.Flags().StringVar(&purpose, "purpose", "", "what the secret is: ca_key, gossip_key or oidc_client_secret")
	wrap.Flags().StringVar(&in, "in", "", "the plaintext secret `FILE` (- for standard input)")
	wrap.Flags().StringVar(&out, "out", "", "the wrapped `FILE` to write (may be the same as --in)")
	withMasterKeyFile(wrap, &mk)
	grp.AddCommand(generate, wrap)
	return grp
}
