package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "write the key wrapped by the master key to this file (gossip.key_file)")
	mk := fs.String("master-key-file", "", "master key file (default: OUTPOST_MASTER_KEY)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	enc := base64.StdEncoding.EncodeToString(k)
	if *out == "" {
		fmt.Fprintln(stdout, enc)
		// A node refuses this key in gossip.key_file: files hold secrets
		// wrapped by the master key.
		fmt.Fprintln(stderr, "outpost keygen: printed an unwrapped key, for OUTPOST_GOSSIP_KEY; for gossip.key_file write a wrapped one with `outpost keygen --out gossip.key --master-key-file master.key`")
		return nil
	}
	kp, err := masterKey(*mk)
	if err != nil {
		return err
	}
	if err := keys.WriteFile(kp, *out, node.PurposeGossipKey, []byte(enc)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote a gossip key to %s, wrapped by master key %s; copy it to every node (gossip.key_file)\n", *out, kp.KeyID())
	return nil
}

func keysCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: outpost keys generate | outpost keys wrap --purpose P --in FILE --out FILE [--master-key-file FILE]")
		return errUsage
	}
	switch args[0] {
	case "generate":
		k, err := keys.GenerateKey()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, k)
		return nil
	case "wrap":
		fs := flag.NewFlagSet("keys wrap", flag.ContinueOnError)
		fs.SetOutput(stderr)
		purpose := fs.String("purpose", "", "what the secret is: ca_key, gossip_key or oidc_client_secret")
		in := fs.String("in", "", "plaintext secret file (- for stdin)")
		out := fs.String("out", "", "wrapped file to write (may be the same as --in)")
		mk := fs.String("master-key-file", "", "master key file (default: OUTPOST_MASTER_KEY)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		switch *purpose {
		case "ca_key", node.PurposeGossipKey, node.PurposeOIDCSecret:
		default:
			fmt.Fprintln(stderr, "outpost keys wrap: --purpose must be ca_key, gossip_key or oidc_client_secret")
			return errUsage
		}
		if *in == "" || *out == "" {
			fmt.Fprintln(stderr, "outpost keys wrap: --in and --out are required")
			return errUsage
		}
		kp, err := masterKey(*mk)
		if err != nil {
			return err
		}
		var data []byte
		if *in == "-" {
			data, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20))
		} else {
			data, err = os.ReadFile(*in)
		}
		if err != nil {
			return err
		}
		if keys.IsWrapped(data) {
			return fmt.Errorf("%s is already wrapped", *in)
		}
		if err := keys.WriteFile(kp, *out, *purpose, data); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrapped %s into %s (purpose %s, master key %s)\n", *in, *out, *purpose, kp.KeyID())
		return nil
	}
	fmt.Fprintf(stderr, "outpost keys: unknown command %q\n", args[0])
	return errUsage
}
