package daemon

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"

	"github.com/mxgate/mxgate/internal/address"
	"github.com/mxgate/mxgate/internal/admin"
	"github.com/mxgate/mxgate/internal/dkimkey"
	"github.com/mxgate/mxgate/internal/dnsx"
	"github.com/mxgate/mxgate/internal/settings"
)

// DKIMKeyFileName is the TLS report signing key made at first start in data.dir.
const DKIMKeyFileName = "tlsrpt-dkim.pem"

// DefaultDKIMSelector is the selector of the generated key when TLSRPT.DKIMSelector is not set.
const DefaultDKIMSelector = "tlsrpt"

// openDKIM loads the TLS report signing key from data.dir, making it at first start. RFC 8460 Section 3:
// reports sent by mail MUST carry a valid DKIM signature, so reports are signed out of the box;
// TLSRPT.DKIMKeyFile replaces this key.
func (d *Daemon) openDKIM(ctx context.Context, o Options) error {
	path := filepath.Join(d.cfg.Data.Dir, DKIMKeyFileName)
	created := false
	if d.pg != nil {
		var err error
		if created, err = d.clusterDKIMKey(ctx, path); err != nil {
			return fmt.Errorf("TLS report DKIM key: %w", err)
		}
	}
	signer, err := loadSigner(path)
	if errors.Is(err, fs.ErrNotExist) {
		signer, err = createDKIMKey(path)
		created = true
	}
	if err != nil {
		return fmt.Errorf("TLS report DKIM key: %w", err)
	}
	d.dkimKey, d.dkimPath = signer, path
	if created {
		d.log.Info("TLS report DKIM key created", "file", path)
		rec, err := d.dkimRecord(d.settingsStore.Current())
		if err != nil {
			// The settings in force are refused; the component state says so at Run.
			if o.BootstrapOut != nil {
				fmt.Fprintf(o.BootstrapOut, "mxgate: TLS reports will be DKIM-signed with the key in %s\n", path)
			}
			return nil
		}
		// Printed once, at first start, for the administrator to publish (status warns until DNS has it).
		// Like the console password: one structured record, unless the caller takes the text.
		if o.BootstrapOut != nil {
			fmt.Fprintf(o.BootstrapOut, "mxgate: TLS reports are DKIM-signed with the key in %s; publish this DNS record:\n  %s. TXT \"%s\"\n", path, rec.Name, rec.Value)
		} else {
			d.log.Warn("TLS reports are DKIM-signed: publish this DNS record", "record_name", rec.Name+".", "record_txt", rec.Value, "file", path)
		}
	}
	return nil
}

// createDKIMKey writes a new RSA 2048 key, readable by the owner only. RSA rather than Ed25519: RFC 8463
// keys are still not verified by many large receivers, and an unverifiable signature is as good as none.
func createDKIMKey(path string) (crypto.Signer, error) {
	key, err := dkimkey.New()
	if err != nil {
		return nil, err
	}
	// A key another process made meanwhile is kept.
	if _, err := (dkimkey.FileStore{Path: path}).LoadOrStore(context.Background(), key); err != nil {
		return nil, err
	}
	return loadSigner(path)
}

// clusterDKIMKey makes the file at path (the node's local copy) hold the cluster's key, kept in the shared
// database: the first node to start stores its key there (the one in its data directory, or a new one) and
// every node signs with it, so that DNS publishes one record. It reports whether this node made the key.
// While the database is unreachable the local copy signs.
func (d *Daemon) clusterDKIMKey(ctx context.Context, path string) (bool, error) {
	local := dkimkey.FileStore{Path: path}
	mine, err := local.Load(ctx)
	made := false
	if errors.Is(err, fs.ErrNotExist) {
		if mine, err = dkimkey.New(); err != nil {
			return false, err
		}
		made = true
	} else if err != nil {
		return false, err
	}
	if d.pgDown != nil {
		if made {
			// No copy of the cluster's key: this node signs with a key of its own until it restarts with the
			// database up; the DKIM status check shows DNS does not publish it.
			d.log.Warn("TLS report DKIM key: shared database unreachable and no local copy of the cluster's key: signing with a key of this node's own", "file", path)
			_, err := local.LoadOrStore(ctx, mine)
			return true, err
		}
		return false, nil
	}
	shared := dkimkey.PostgresStore{PG: d.pg}
	sctx, cancel := context.WithTimeout(ctx, dbConnectTimeout)
	defer cancel()
	if err := shared.Migrate(sctx); err != nil {
		return false, err
	}
	key, err := shared.LoadOrStore(sctx, mine)
	if err != nil {
		return false, err
	}
	if bytes.Equal(key, mine) && !made {
		return false, nil
	}
	if !bytes.Equal(key, mine) {
		if !made {
			d.log.Warn("TLS report DKIM key: this node's key is replaced by the cluster's, kept in the shared database", "file", path)
		}
		made = false
	}
	return made, local.Replace(key)
}

// dkimSigning is the key, selector and file that sign reports under a settings generation: the key of
// TLSRPT.DKIMKeyFile when set (with TLSRPT.DKIMSelector, required), the generated key otherwise.
func (d *Daemon) dkimSigning(snap settings.Snapshot) (signer crypto.Signer, selector, file string, err error) {
	selector = snap.Get("TLSRPT.DKIMSelector")
	if file = snap.Get("TLSRPT.DKIMKeyFile"); file != "" {
		if signer, err = loadSigner(file); err != nil {
			return nil, "", "", &settings.KeyError{Key: "TLSRPT.DKIMKeyFile", Err: err}
		}
		if selector == "" {
			return nil, "", "", &settings.KeyError{Key: "TLSRPT.DKIMSelector", Err: errors.New("required with TLSRPT.DKIMKeyFile")}
		}
		return signer, selector, file, nil
	}
	if selector == "" {
		selector = DefaultDKIMSelector
	}
	return d.dkimKey, selector, d.dkimPath, nil
}

// defaultMailHost is the domain of the gateway's default addresses (postmaster@, the TLS report contact):
// delivery.hostname, the name the gateway sends mail as.
func (d *Daemon) defaultMailHost() string { return d.cfg.Delivery.Hostname }

// dkimRecord is the DNS record to publish for the key that signs reports under snap.
func (d *Daemon) dkimRecord(snap settings.Snapshot) (admin.DKIMRecord, error) {
	signer, selector, file, err := d.dkimSigning(snap)
	if err != nil {
		return admin.DKIMRecord{}, err
	}
	dom, err := d.reportDomain(snap)
	if err != nil {
		return admin.DKIMRecord{}, err
	}
	value, err := dkimTXT(signer.Public())
	if err != nil {
		return admin.DKIMRecord{}, err
	}
	return admin.DKIMRecord{Name: selector + "._domainkey." + dom.String(), Value: value, KeyFile: file}, nil
}

// reportDomain is the submitter domain, which is the DKIM d= domain: TLSRPT.Submitter, or the domain of
// the contact address (RFC 8460 Section 5.3).
func (d *Daemon) reportDomain(snap settings.Snapshot) (address.Domain, error) {
	if sub := snap.Get("TLSRPT.Submitter"); sub != "" {
		dom, err := address.ParseDomain(sub)
		if err != nil {
			return address.Domain{}, &settings.KeyError{Key: "TLSRPT.Submitter", Err: err}
		}
		return dom, nil
	}
	ca, err := address.ParseAddress(d.contact(snap))
	if err != nil {
		return address.Domain{}, &settings.KeyError{Key: "TLSRPT.ContactInfo", Err: err}
	}
	return ca.Domain, nil
}

// contact is contact-info: TLSRPT.ContactInfo, or postmaster at the gateway's name.
func (d *Daemon) contact(snap settings.Snapshot) string {
	if c := snap.Get("TLSRPT.ContactInfo"); c != "" {
		return c
	}
	return "postmaster@" + d.defaultMailHost()
}

// dkimTXT is the DKIM key record of pub (RFC 6376 Section 3.6.1; RFC 8463 for Ed25519). s=email:tlsrpt
// names the TLSRPT service type (RFC 8460 Section 3) beside email, for verifiers that know only email.
func dkimTXT(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; s=email:tlsrpt; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; s=email:tlsrpt; p=" + base64.StdEncoding.EncodeToString(k), nil
	}
	return "", fmt.Errorf("unsupported DKIM key type %T", pub)
}

// checkDKIMPublished looks the record up and says whether DNS has the key.
func (d *Daemon) checkDKIMPublished(ctx context.Context, rec *admin.DKIMRecord) {
	txts, _, err := d.out.Resolver.LookupTXT(ctx, rec.Name)
	if err != nil {
		if errors.Is(err, dnsx.ErrNotFound) {
			rec.Problem = "no TXT record at " + rec.Name
		} else {
			rec.Problem = "lookup failed: " + err.Error()
		}
		return
	}
	want := dkimTag(rec.Value, "p")
	for _, t := range txts {
		if dkimTag(t, "p") == want {
			rec.Published = true
			return
		}
	}
	rec.Problem = "the TXT record at " + rec.Name + " holds another key"
}

// dkimTag returns a tag's value from a DKIM key record, without the white space the record may fold in.
func dkimTag(rec, tag string) string {
	for _, part := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.TrimSpace(k) == tag {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}

// DKIM returns the record to publish for the key that signs TLS reports, and whether DNS has it.
func (d *Daemon) DKIM(ctx context.Context) (admin.DKIMRecord, error) {
	rec, err := d.dkimRecord(d.settingsStore.Current())
	if err != nil {
		return rec, err
	}
	d.checkDKIMPublished(ctx, &rec)
	return rec, nil
}
