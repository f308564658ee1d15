# The lab's known_hosts file from the Vagrantfile: the same format, lock and atomic replace as
# kbootstrap/lab/known_hosts.py (several layouts share one file; an update replaces only the lines of
# the given address).
require "fileutils"

module LabKnownHosts
  module_function

  # The node's SSH host public keys ("type base64"), from `cat /etc/ssh/ssh_host_*_key.pub` output.
  def parse(text)
    text.lines.map(&:split).select { |f| f.length >= 2 && (f[0].start_with?("ssh-") || f[0].start_with?("ecdsa-")) }
        .map { |f| "#{f[0]} #{f[1]}" }
  end

  def update(path, address, keys)
    rewrite(path, address, keys.map { |k| "#{address} #{k}" })
  end

  def forget(path, address)
    rewrite(path, address, []) if File.exist?(path)
  end

  def rewrite(path, address, new_lines)
    FileUtils.mkdir_p(File.dirname(path))
    File.open("#{path}.lock", File::RDWR | File::CREAT, 0o644) do |lock|
      lock.flock(File::LOCK_EX)
      old = File.exist?(path) ? File.readlines(path, chomp: true) : []
      kept = old.reject do |line|
        s = line.strip
        !s.empty? && !s.start_with?("#", "@") && s.split[0].split(",").include?(address)
      end
      tmp = File.join(File.dirname(path), ".#{File.basename(path)}.#{Process.pid}")
      File.write(tmp, (kept + new_lines).map { |l| "#{l}\n" }.join)
      File.chmod(0o644, tmp)
      File.rename(tmp, path)
    end
  end
end
