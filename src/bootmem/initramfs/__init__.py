"""initramfs"""
