# Homebrew formula for cfaccess. The release workflow publishes the archives
# named here; packaging/update.sh VERSION SHA256SUMS rewrites the version and
# checksums from a release's SHA256SUMS file.
class Cfaccess < Formula
  desc "Fast single-binary client for Cloudflare Access, a drop-in for cloudflared access"
  homepage "https://github.com/cfaccess/cfaccess"
  version "0.1.0"
  license any_of: ["MIT", "Apache-2.0"]

  base = "https://github.com/cfaccess/cfaccess/releases/download/v#{version}"
  on_macos do
    on_arm do
      url "#{base}/cfaccess-v#{version}-aarch64-apple-darwin.tar.gz"
      sha256 "0000000000000000000000000000000000000000000000000000000000000000" # aarch64-apple-darwin
    end
    on_intel do
      url "#{base}/cfaccess-v#{version}-x86_64-apple-darwin.tar.gz"
      sha256 "0000000000000000000000000000000000000000000000000000000000000000" # x86_64-apple-darwin
    end
  end
  on_linux do
    on_arm do
      url "#{base}/cfaccess-v#{version}-aarch64-unknown-linux-musl.tar.gz"
      sha256 "0000000000000000000000000000000000000000000000000000000000000000" # aarch64-unknown-linux-musl
    end
    on_intel do
      url "#{base}/cfaccess-v#{version}-x86_64-unknown-linux-musl.tar.gz"
      sha256 "0000000000000000000000000000000000000000000000000000000000000000" # x86_64-unknown-linux-musl
    end
  end

  def install
    bin.install "cfaccess"
    # generated from the clap definitions by the release workflow
    bash_completion.install "completions/cfaccess.bash" => "cfaccess"
    zsh_completion.install "completions/_cfaccess"
    fish_completion.install "completions/cfaccess.fish"
    man1.install Dir["man/*.1"]
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/cfaccess --version")
    assert_match "ssh-gen", shell_output("#{bin}/cfaccess completions bash")
  end
end
